"""Owner-only state on disk: folders 0700 and files 0600, whatever the process's umask.

Development state holds secrets (signing keys in a service's database, client secrets, card
tokens on their way through a saga), so no other local user may read any of it.
"""

from __future__ import annotations

import os
from pathlib import Path

OWNER_ONLY_DIR = 0o700
OWNER_ONLY_FILE = 0o600


def private_dir(path: Path) -> Path:
    """A state folder of the system's own: created owner-only (any missing parent too), and
    tightened if it exists already."""
    _make_missing(path)
    _tighten(path, OWNER_ONLY_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and owner-only if missing, else tighten it. Missing folders on the way
    are made owner-only; an existing one is left as it is (it may be anyone's, like `/tmp`).

    SQLite gives a database's `-wal` and `-shm` files the database file's own mode."""
    _make_missing(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, OWNER_ONLY_FILE)
    os.close(descriptor)
    _tighten(path, OWNER_ONLY_FILE)
    return path


def _make_missing(path: Path) -> None:
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=OWNER_ONLY_DIR, exist_ok=True)


def _tighten(path: Path, mode: int) -> None:
    status = path.stat()
    # A folder someone else owns (a mounted volume) is theirs to set: only our own is changed.
    if status.st_uid == os.getuid() and status.st_mode & 0o777 != mode:
        path.chmod(mode)
