"""GLUE data: the task table, TSV/hub reading, the checked tokenized cache, the data module and
batching (dynamic padding, length split, packing)."""
