"""Weight movement per layer and head, and CKA, during fine-tuning (pure PyTorch + a callback)."""
