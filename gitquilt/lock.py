"""Advisory locks (``flock``) that record who holds them.

``flock`` locks die with their process, so a lock left by ``kill -9`` is never
stale on a local file system: the next command simply gets it. The holder's host,
pid and start time are written into the file so that a waiting command can say
who it is waiting for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from gitquilt.errors import ConfigError, LockError

#: Seconds a command waits for a lock held by another live process.
DEFAULT_TIMEOUT = 30.0
TIMEOUT_ENV = "GITQUILT_LOCK_TIMEOUT"


def default_timeout() -> float:
    """``GITQUILT_LOCK_TIMEOUT`` (seconds) if set, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, not {text!r}")
    return value


class FileLock:
    """An exclusive (or shared) lock on ``path``; waits up to ``timeout`` seconds
    (default: :func:`default_timeout`)."""

    def __init__(self, path: Path, shared: bool = False, timeout: float | None = None, what: str = "") -> None:
        self.path = path
        self.shared = shared
        self.timeout = default_timeout() if timeout is None else timeout
        self.what = what or str(path)
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    who = f" (held by pid {holder.get('pid')} on {holder.get('host')})" if holder else ""
                    raise LockError(f"{self.what} is locked by another gitquilt process{who}; try again later") from None
                time.sleep(0.05)
        if not self.shared:
            record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
