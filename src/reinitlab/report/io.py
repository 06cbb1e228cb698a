"""Atomic output for report files: write to a temp name beside the target, then rename, so an
interrupted report never leaves a half-written table, figure or page behind.

The implementation is `reinitlab.atomic` (one for the whole project, torch-free on import);
this module keeps the names the report code imports."""

from __future__ import annotations

from reinitlab.atomic import atomic_path, write_text

__all__ = ["atomic_path", "write_text"]
