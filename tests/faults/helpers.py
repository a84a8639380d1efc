"""Helpers shared by the fault tests: spawning the real executable, polling, store checks."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitquilt import fsutil
from tests.conftest import BIN_DIR, Repo, Result, run

#: Every wait in these tests is bounded by this many seconds.
WAIT_LIMIT = 30.0


def spawn(repo: Repo, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``git-quilt ARGS`` (the installed executable itself, so that a signal sent to
    the returned process reaches gitquilt and not git's wrapper process)."""
    return subprocess.Popen(
        [str(BIN_DIR / "git-quilt"), *args], cwd=repo.root, env={**repo.env, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[str] | None = None, what: str = "") -> None:
    """Poll ``cond`` until true; fail if ``proc`` exits first or the wait limit passes."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}\nstdout: {out}\nstderr: {err}")
        if time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
                proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def interrupt(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str]:
    """Send ``sig`` and collect (exit code, stdout, stderr), bounded."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=WAIT_LIMIT)
    return proc.returncode, out, err


def kill9(proc: subprocess.Popen[str]) -> None:
    rc, _out, _err = interrupt(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL, f"process was not killed (exit {rc}): the crash point was missed"


def listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def writing_in(proc: subprocess.Popen[str], directory: Path) -> bool:
    """Whether ``proc`` has temporary files in ``directory``: named ones are listed there,
    anonymous ones (O_TMPFILE) only among its open files, as ``DIR/#123 (deleted)``."""
    if listdir(directory):
        return True
    prefix = os.path.realpath(directory) + "/"
    try:
        fds = os.listdir(f"/proc/{proc.pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{proc.pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def temp_files(root: Path) -> list[str]:
    """gitquilt temporary files anywhere below ``root``."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files if fsutil.tmp_owner_pid(f) is not None]
    return found


def cache_root(repo: Repo) -> Path:
    return Path(repo.env["QUILT_CACHE_DIR"]) if repo.env.get("QUILT_CACHE_DIR") else repo.root / ".git" / "quilt"


def store_objects(cache: Path) -> dict[str, Path]:
    """digest → path of every fragment in a store."""
    out = {}
    base = cache / "objects" / "sha256"
    for sub in listdir(base):
        for name in listdir(base / sub):
            out[sub + name] = base / sub / name
    return out


def assert_objects_hash_to_names(cache: Path) -> dict[str, Path]:
    """Invariant 1: every key in the store holds bytes that hash to it."""
    objects = store_objects(cache)
    for digest, path in objects.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} does not hash to its name"
    return objects


def assert_store_consistent(cache: Path) -> dict[str, Path]:
    """Every key holds bytes that hash to it, and no temporary file is left."""
    objects = assert_objects_hash_to_names(cache)
    assert listdir(cache / "tmp") == [], f"temporary files left in {cache / 'tmp'}"
    return objects


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (relative POSIX path → bytes)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def many_files(n: int, size: int, tag: str = "") -> dict[str, bytes]:
    """``n`` files of distinct content in a few subdirectories."""
    return {
        f"d{i % 7}/f{i:05d}.bin": (f"{tag}{i}:".encode() * (size // 4 + 1))[:size]
        for i in range(n)
    }


def quilt_with(repo: Repo, env: dict[str, str], *args: str) -> Result:
    """``git quilt ARGS`` in ``repo`` with extra environment variables."""
    return run(["git", "quilt", *args], repo.root, {**repo.env, **env})
