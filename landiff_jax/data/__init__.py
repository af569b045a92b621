"""Training data: the record format and dataset directories (`records`), sources of examples
(`sources`), the grain pipeline that batches them per JAX process (`pipeline`), and the synthetic
world of the tiny model (`synthetic`) with its measurements from pixels (`measure`)."""
