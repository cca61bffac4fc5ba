"""One writer per results folder: an OS file lock held for the whole run.

The lock is ``flock(LOCK_EX)`` on a lock file that is never deleted (deleting it would let two runs lock two
different files of the same name). The kernel drops a flock when its holder dies, even by SIGKILL, so a lock
that can be taken is free: a file still naming a holder then only tells of a run that was killed, and the
new run takes over with a note. While held, the file names its holder (pid, host, start time, command) so a
refused run can say who holds it; a clean release empties it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from geodite.tasks.store import StoreError


class StoreLockedError(StoreError):
    """Another live run holds the results folder."""


def _holder_text(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
            f"{info.get('command', '?')}")


def _read_holder(fd: int) -> dict | None:
    """The holder recorded in the lock file (None when empty or not yet fully written)."""
    raw = os.pread(fd, 1 << 16, 0)
    try:
        info = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _is_dead(info: dict) -> bool:
    """True when ``info`` names a process of this host that no longer exists (the content a new holder has
    not yet replaced)."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        pass
    return False


class RunLock:
    """``with RunLock(folder / "run.lock", folder, log):`` — hold ``folder`` for one run, or raise
    :class:`StoreLockedError` naming the live holder. ``log`` gets the one-line note of a stale takeover."""

    def __init__(self, path: str | Path, folder: str | Path, log: Callable[[str], None]):
        self.path = Path(path)
        self.folder = Path(folder)
        self.log = log
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._wait_for_holder(fd)
            os.close(fd)
            who = _holder_text(holder) if holder else "a process that is just starting"
            raise StoreLockedError(
                f"{self.folder} is in use by another run ({who}); wait for it to finish, or use "
                "--results-dir to write elsewhere"
            ) from None
        stale = _read_holder(fd)
        if stale is not None:
            self.log(f"note: {self.folder}: taking over the lock of a run that ended without releasing it "
                     f"({_holder_text(stale)})")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    @staticmethod
    def _wait_for_holder(fd: int, tries: int = 20, interval_s: float = 0.05) -> dict | None:
        """The live holder, giving it up to ``tries × interval_s`` (s) to write its name after locking."""
        for _ in range(tries):
            holder = _read_holder(fd)
            if holder is not None and not _is_dead(holder):
                return holder
            time.sleep(interval_s)
        return None

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # empty while still held: a later run sees a clean release
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
