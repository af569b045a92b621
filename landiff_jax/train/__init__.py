"""The one trainer for every stage (see train.loop.train and tools/train.py)."""
