"""Training data: the synthetic world of the tiny model (`synthetic`) and its measurements (`measure`)."""
