"""seedlab: how much of a fine-tuning result is the random seed."""

__version__ = "0.1.0"
