"""Is the Hugging Face hub usable from here? Asked once per process, in about a second.

Without this, a machine with no route to the hub finds out the slow way: huggingface_hub
retries every request for 25-35 s per file, per job, and a sweep of 26 jobs spends ten minutes
failing. Local files (a model directory, the HF cache, GLUE TSVs) are always tried first; the
hub is only asked when they are missing, and only when this check says it can answer.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request

TIMEOUT_S = 3.0
OFFLINE_VALUES = {"1", "on", "yes", "true"}


def endpoint() -> str:
    """The hub's address (`$HF_ENDPOINT` for mirrors)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_by_choice() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network at all."""
    return any(
        os.environ.get(var, "").strip().lower() in OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def unreachable_reason() -> str | None:
    """None when the hub can be asked; otherwise why not, phrased to follow "the hub is ..."."""
    if offline_by_choice():
        return "switched off (HF_HUB_OFFLINE=1)"
    return probe(endpoint())


@functools.cache
def probe(url: str) -> str | None:
    """One request to the hub per process and address: None when it answers."""
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: reachable (the status path may not exist on a mirror)
    except (OSError, ValueError) as e:
        return f"unreachable ({url}: {getattr(e, 'reason', e)})"


__all__ = ["endpoint", "offline_by_choice", "probe", "unreachable_reason"]
