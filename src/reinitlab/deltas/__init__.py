"""Weight movement per layer and head, and CKA, during fine-tuning (pure PyTorch + a callback),
and the per-head movement figure the report draws too."""
