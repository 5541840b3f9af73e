"""One writer at a time for an output folder.

`output_lock(folder)` holds an exclusive `fcntl.flock` on `<folder>.lock`, a file beside
the folder (so it is never part of the DVC output), and writes the holder's pid, host and
start time into it. The kernel drops a flock when its process dies, however it dies, so
a lock left behind by a killed run (its pid still in the file, dead) is stale by
construction: the next run takes it over and says so. While a live run holds it, a second
one is refused with a FaceidError naming the folder and the holder.

    with output_lock(out_dir):
        ...write out_dir...

POSIX only (fcntl); on a file system without flock support (some NFS setups) taking
the lock fails with OSError rather than silently not locking.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faceid.errors import FaceidError

__all__ = ["OutputLockedError", "lock_path", "output_lock", "read_holder"]

log = logging.getLogger(__name__)


class OutputLockedError(FaceidError):
    """Another live run is writing the same output folder."""


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + ".lock")


def read_holder(path: str | Path) -> dict[str, Any]:
    """What a lock file says about its holder ({} when unreadable or empty)."""
    try:
        holder = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (it has not written its pid yet)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {started}: {holder.get('command', '?')})"


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str = "") -> Iterator[Path]:
    """Hold the lock of `folder` for the block; OutputLockedError if a live run holds it.

    `command` (e.g. "stages/crop.py") is recorded for the message another run sees.
    """
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # held open for the block: the flock lives on it
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(path)
            raise OutputLockedError(
                f"{folder} is being written by {_describe(holder)}; wait for that run to end or "
                f"stop it (kill {holder.get('pid', '<pid>')}), then run again. If no such run "
                f"exists on {holder.get('host', 'its host')}, the lock {path} is held over a "
                "network file system: delete it"
            ) from None
        previous = read_holder(path)
        if previous.get("pid"):  # a clean release empties the file: this one was killed
            log.warning("%s: taking over the stale lock of %s, which ended without releasing it",
                        folder, _describe(previous))  # fmt: skip
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": command}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield path
        finally:
            # emptied, not deleted: a run that opened the file just before a delete would
            # lock a removed inode while the next one creates and locks a new file
            handle.seek(0)
            handle.truncate()
            handle.flush()
    finally:
        handle.close()  # closing drops the flock
