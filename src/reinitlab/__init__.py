"""reinitlab: re-initialize parts of a pretrained BERT, fine-tune on GLUE, compare with the baseline."""

from reinitlab.resolvers import register as _register_resolvers

__version__ = "0.1.0"

_register_resolvers()
