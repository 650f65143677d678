"""Where the tests keep what is slow to build between runs (debootstrapped Debian roots):
``$ODAR_CACHE_DIR``, by default /var/tmp/odar-build. Point it at an empty folder to prove a first
run on a fresh machine."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ODAR_CACHE_DIR"
DEFAULT_CACHE = Path("/var/tmp/odar-build")


def build_cache() -> Path:
    """The cache folder, created if it is not there yet."""
    folder = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
