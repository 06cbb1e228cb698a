"""Run reinitlab from a checkout: `python train.py task=cola model=minilm-l6 reinit.k=5`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from reinitlab.train import main  # noqa: E402

if __name__ == "__main__":
    main()
