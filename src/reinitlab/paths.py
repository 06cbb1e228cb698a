"""Where the bundled Hydra configs live, in a checkout and in an installed wheel."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """`conf/` at the repository root in a checkout; `reinitlab/conf` inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"reinitlab's config directory was not found next to {here}")


def missing_file_error(owner: str, path: Path):
    """The error for an input file that is not there, listing what its folder holds instead
    (a misspelt or differently cased name is then plain to see)."""
    from reinitlab.errors import ReinitlabError

    siblings = sorted(p.name for p in path.parent.glob("*")) if path.parent.is_dir() else []
    return ReinitlabError(
        f"{owner}: {path} not found (files in {path.parent}: {siblings or 'none'})"
    )
