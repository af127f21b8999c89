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


def file_sha256(path: Path) -> str:
    """The SHA-256 of every byte of ``path``, remembered by (resolved path, size, inode, modification
    and change times), so a file read once is not read again until any of those changes. Writing
    into a file changes its change time, which no tool can set back, so an edit is always seen."""
    import hashlib
    import json

    path = Path(path)
    status = path.stat()
    identity = json.dumps([str(path.resolve()), status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns])
    key = hashlib.sha256(identity.encode()).hexdigest()
    remembered = cache_root() / "file-sha256" / key
    try:
        return remembered.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 23):
            digest.update(block)
    try:  # written whole or not at all: processes hashing the same file at once never read half a digest
        remembered.parent.mkdir(parents=True, exist_ok=True)
        staging = remembered.with_name(f"{key}.{os.getpid()}.tmp")
        staging.write_text(digest.hexdigest())
        os.replace(staging, remembered)
    except OSError:
        pass
    return digest.hexdigest()
