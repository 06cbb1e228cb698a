"""reinitlab: re-initialize parts of a pretrained BERT, fine-tune on GLUE, compare with the baseline."""

__version__ = "0.1.0"
