"""invscale's own cache directory: built artefacts and settled checks kept between processes.

``$INVSCALE_CACHE`` when set, else ``~/.cache/invscale``. What is kept here can always be rebuilt or
re-checked: a missing or unwritable directory only costs the time to do that again.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The directory invscale keeps its cache in (not created here)."""
    return Path(os.environ.get("INVSCALE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "invscale"))


def settled(kind: str, key: str) -> bool:
    """Whether a check of ``kind`` was passed before for ``key`` (a digest of everything it depends on)."""
    return (cache_root() / kind / key).is_file()


def settle(kind: str, key: str) -> None:
    """Record that the check of ``kind`` passed for ``key``; a cache that cannot be written is skipped."""
    folder = cache_root() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).touch()
    except OSError:
        pass
