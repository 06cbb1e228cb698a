"""Where the tests find the repository and the GLUE data -- the one definition of both.

GLUE is `$GLUE_DIR` when set (the Makefile exports it), else `<repo>/../shared/data/glue`.
Tests that read it are marked `needs_glue`: skipped, naming the folder, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def glue_location() -> Path:
    """`$GLUE_DIR` (made absolute: job subprocesses run in other folders), else the shared copy."""
    env = os.environ.get("GLUE_DIR")
    if env:  # an empty value (the Makefile's when nothing was found) counts as unset
        return Path(os.path.abspath(os.path.expanduser(env)))
    return REPO.parent / "shared" / "data" / "glue"


GLUE = glue_location()
GLUE_MISSING = f"GLUE data not found at {GLUE} (set $GLUE_DIR to a folder of GLUE TSVs)"
needs_glue = pytest.mark.skipif(not GLUE.is_dir(), reason=GLUE_MISSING)
