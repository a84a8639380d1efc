"""Locks: a dead holder never blocks, a live one is named (RELIABILITY.md §34, §29)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gitquilt.errors import ConfigError, LockError
from gitquilt.lock import FileLock
from tests.conftest import Repo
from tests.faults.helpers import WAIT_LIMIT, quilt_with, read_tree, wait_until

HOLD = """
import sys, time
from pathlib import Path
from gitquilt.lock import FileLock
FileLock(Path(sys.argv[1])).acquire()
time.sleep(float(sys.argv[2]))
"""


def _hold_lock(path: Path) -> subprocess.Popen[bytes]:
    """A separate process that takes the lock and keeps it; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(WAIT_LIMIT)])

    def held() -> bool:
        try:
            return bool(json.loads(path.read_text() or "{}").get("pid") == proc.pid)
        except (OSError, ValueError):
            return False

    wait_until(held, proc, "the helper process to take the lock")  # type: ignore[arg-type]
    return proc


@pytest.fixture
def hydrated(repo: Repo) -> Repo:
    repo.write("data/a.txt", b"a" * 10)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    (repo.root / "data" / "a.txt").unlink()
    return repo


def test_live_lock_times_out_with_one_line_naming_pid_and_host(hydrated: Repo) -> None:
    repo = hydrated
    holder = _hold_lock(repo.root / ".git" / "quilt-checkout.lock")
    try:
        r = quilt_with(repo, {"GITQUILT_LOCK_TIMEOUT": "0.2"}, "checkout", "data")
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"pid {holder.pid}" in lines[0] and socket.gethostname() in lines[0]
    assert "locked" in lines[0] and "Traceback" not in r.stderr
    assert not (repo.root / "data" / "a.txt").exists()  # nothing was written while locked out


def test_lock_of_a_killed_process_does_not_block(hydrated: Repo) -> None:
    repo = hydrated
    holder = _hold_lock(repo.root / ".git" / "quilt-checkout.lock")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # the lock file still names the dead holder, but flock died with it
    r = quilt_with(repo, {"GITQUILT_LOCK_TIMEOUT": "0"}, "checkout", "data")
    assert r.returncode == 0, r.stderr
    assert read_tree(repo.root / "data") == {"a.txt": b"a" * 10}


def test_lock_released_by_killed_child_in_process(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = _hold_lock(path)
    with pytest.raises(LockError, match=f"pid {holder.pid}"):
        FileLock(path, timeout=0).acquire()
    holder.kill()
    holder.wait()
    with FileLock(path, timeout=0):
        assert json.loads(path.read_text())["pid"] != holder.pid


def test_bad_lock_timeout_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GITQUILT_LOCK_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="GITQUILT_LOCK_TIMEOUT"):
        FileLock(tmp_path / "x.lock")
