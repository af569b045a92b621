"""Training data: the record format and dataset directories (`records`), sources of examples
(`sources`), video clips in (`clips`: decoded video files or synthetic clips) and their examples
for every stage through the frozen models (`prepare`), the grain pipeline that batches them per
JAX process (`pipeline`), and the synthetic world of the tiny model (`synthetic`) with its
measurements from pixels (`measure`)."""
