"""One server per system: `cleave up` claims its topology's state folder (`var/<topology>/`).

The claim is an exclusive `flock` on `server.lock`, held for the server's lifetime, beside
`server.json` (its public URL, pid and topology), which later commands read to find the running
system. A second `cleave up` on the same state is refused with the first one's address and pid.
The lock dies with its process, so a crashed server never leaves a stale claim behind. A server
whose folder is deleted under it would go on answering from deleted files: `watch` notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cleave.config import SystemConfig
from cleave.errors import CleaveError

LOCK_FILE = "server.lock"
SERVER_FILE = "server.json"


@dataclass(frozen=True)
class RunningSystem:
    topology: str
    public_url: str
    pid: int


class ServerClaim:
    def __init__(self, folder: Path, descriptor: int) -> None:
        self.folder = folder
        self._descriptor = descriptor
        stat = os.fstat(descriptor)
        self._identity = (stat.st_dev, stat.st_ino)

    @classmethod
    @contextlib.contextmanager
    def take(cls, config: SystemConfig) -> Iterator[ServerClaim]:
        """Claim `config`'s state folder for this process, or explain who holds it."""
        folder = config.var_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            holder = _announced(folder)
            where = f" at {holder.public_url} (pid {holder.pid})" if holder else ""
            raise CleaveError(
                f"topology {config.topology.name} is already being served{where} from "
                f"{folder}: use it, or stop it first"
            ) from None
        claim = cls(folder, descriptor)
        try:
            running = RunningSystem(config.topology.name, config.public_url, os.getpid())
            (folder / SERVER_FILE).write_text(json.dumps(running.__dict__))
            yield claim
        finally:
            (folder / SERVER_FILE).unlink(missing_ok=True)
            os.close(descriptor)  # releases the lock

    def intact(self) -> bool:
        """Whether the folder this server claimed is still the one on disk."""
        try:
            stat = (self.folder / LOCK_FILE).stat()
        except OSError:
            return False
        return (stat.st_dev, stat.st_ino) == self._identity

    async def watch(self, interval_seconds: float = 1.0) -> str:
        """Return, with the reason, once the claimed folder has been deleted or replaced."""
        while self.intact():  # noqa: ASYNC110 - the file system sends no event to wait on
            await asyncio.sleep(interval_seconds)
        return (
            f"{self.folder} was deleted while this server was running on it: its data is gone "
            "with it. Stopping; run `cleave up` again to start afresh."
        )


def running_systems(config: SystemConfig) -> list[RunningSystem]:
    """Every system served from this configuration's state folders right now."""
    if not config.var_root.is_dir():
        return []
    found = []
    for folder in sorted(path for path in config.var_root.iterdir() if path.is_dir()):
        if _held(folder / LOCK_FILE) and (announced := _announced(folder)) is not None:
            found.append(announced)
    return found


def _held(lock: Path) -> bool:
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def _announced(folder: Path) -> RunningSystem | None:
    try:
        body = json.loads((folder / SERVER_FILE).read_text())
        return RunningSystem(str(body["topology"]), str(body["public_url"]), int(body["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
