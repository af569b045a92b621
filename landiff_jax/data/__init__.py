"""Training data: the record format and dataset directories (`records`), sources of examples
(`sources`) and the grain pipeline that batches them per JAX process (`pipeline`)."""
