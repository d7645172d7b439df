"""One owner per run folder: an OS-level lock (``fcntl.flock``) on ``<run>/.lock``.

The kernel drops a flock when its file descriptor closes, so the lock is released on
every kind of exit, ``kill -9`` included; no stale lock is ever left to clean up. The
file also holds the owner's pid and host, so a second process can say who has it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from replearn.errors import ReplearnError
from replearn.runs.layout import LOCK, load_json


def _holder(path: Path) -> str:
    info = load_json(path)
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["time"]))
        return f"pid {info['pid']} on host {info['host']} (since {since})"
    except (OSError, ValueError, OverflowError, KeyError, TypeError):
        return "another process"  # it holds the lock but has not written its name yet


class RunLock:
    """``with RunLock(run_dir):`` - exclusive ownership of ``run_dir``; ReplearnError if another process holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.dir, os.W_OK | os.X_OK):  # a read-only folder: refuse before writing anything
                raise PermissionError(errno.EACCES, "read-only or no permission", str(self.dir))
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ReplearnError(f"cannot write to {self.dir} ({exc.strerror}); make it writable "
                                "or work on a copy of the run folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ReplearnError(f"{self.dir} is in use by {_holder(self.path)}; wait for it to finish "
                                    "or stop that process, then run again") from None
            raise
        # Name the owner for whoever finds the folder locked (written after the lock is ours).
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
