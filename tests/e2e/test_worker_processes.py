"""The command-line tool hashes (add, status) and copies (checkout) many files in forked
worker processes (ops/forked.py); the results are the thread path's, byte for byte.

A ``sitecustomize`` module on PYTHONPATH wraps ``os.fork`` in the ``git-quilt`` process
and notes each call in a file: the probe sees the real executable's behaviour from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")

PROBE = """
import os
_fork = os.fork
def _noted_fork():
    pid = _fork()
    if pid:
        with open(os.environ["FORK_LOG"], "a") as f:
            f.write(f"{os.getpid()} {pid}\\n")
    return pid
os.fork = _noted_fork
"""


def _files(n: int) -> dict[str, bytes]:
    return {f"d{i % 7}/f{i:04d}.bin": (f"file {i} ".encode() * (1 + i % 50)) for i in range(n)}


def _probe_env(tmp_path: Path, log: Path, **extra: str) -> dict[str, str]:
    site = tmp_path / "probe-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(PROBE)
    return {"PYTHONPATH": str(site), "FORK_LOG": str(log), **extra}


def _forks(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_add_status_and_checkout_fork_workers_and_match_the_thread_path(
    make_repo: Callable[..., Repo], tmp_path: Path
) -> None:
    files = _files(900)
    log = tmp_path / "forks.log"
    forking = make_repo("forking", env=_probe_env(tmp_path, log))
    threads = make_repo("threads", env=_probe_env(tmp_path, tmp_path / "thread-forks.log", GITQUILT_NO_FORK="1"))
    for repo in (forking, threads):
        for rel, data in files.items():
            repo.write(f"data/{rel}", data)

    forking.quilt("add", "data", check=True)
    assert _forks(log) >= 1, "add hashed in threads only"
    threads.quilt("add", "data", check=True)
    assert _forks(tmp_path / "thread-forks.log") == 0  # GITQUILT_NO_FORK=1: threads
    assert forking.read("data.quilt") == threads.read("data.quilt")
    forking.git("commit", "-qm", "data")
    [st] = json.loads(forking.quilt("status", "--json", "data", check=True).stdout)
    assert st["state"] == "clean"

    # a changed file: status hashes everything the stat cache cannot vouch for, in workers
    before = _forks(log)
    for rel in list(files)[:300]:
        os.utime(forking.root / "data" / rel, ns=(1, 1))  # same bytes, new mtime: must be read again
    [st] = json.loads(forking.quilt("status", "--json", "data", check=True).stdout)
    assert st["state"] == "clean"
    assert _forks(log) > before

    before = _forks(log)
    shutil.rmtree(forking.root / "data")
    forking.quilt("checkout", "data", check=True)
    assert _forks(log) > before, "checkout copied in threads only"
    got = {p.relative_to(forking.root / "data").as_posix(): p.read_bytes()
           for p in (forking.root / "data").rglob("*") if p.is_file()}
    assert got == files
    [st] = json.loads(forking.quilt("status", "--json", "data", check=True).stdout)
    assert st["state"] == "clean"
    forking.quilt("verify", check=True)


def test_an_error_in_a_forked_worker_is_one_line_and_nothing_is_pinned(
    make_repo: Callable[..., Repo], tmp_path: Path
) -> None:
    """A read error raised in a child process reaches the user as the usual one line."""
    log = tmp_path / "forks.log"
    site = tmp_path / "probe-site"
    site.mkdir()
    # in each child (never in the parent), reading a package file fails with EIO
    (site / "sitecustomize.py").write_text(PROBE + """
import errno
_inner = os.fork
def _fork_with_failing_reads():
    pid = _inner()
    if pid == 0:
        _open = os.open
        def _failing_open(path, flags, *args, **kwargs):
            if "/data/" in os.fspath(path):
                raise OSError(errno.EIO, "Input/output error (injected)", os.fspath(path))
            return _open(path, flags, *args, **kwargs)
        os.open = _failing_open
    return pid
os.fork = _fork_with_failing_reads
""")
    repo = make_repo()
    for rel, data in _files(3000).items():  # ~50 groups of files: the children get some
        repo.write(f"data/{rel}", data)
    repo.env.update(PYTHONPATH=str(site), FORK_LOG=str(log))
    r = repo.quilt("add", "data")
    assert _forks(log) >= 1
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "cannot store" in lines[0] and "injected" in lines[0] and "Traceback" not in r.stderr
    assert not (repo.root / "data.quilt").exists()
    assert not any((repo.root / ".git" / "quilt" / "tmp").iterdir())  # no temporary file left
    # without the fault, the same add completes
    repo.env.pop("PYTHONPATH")
    repo.quilt("add", "data", check=True)
    repo.quilt("verify", check=True)
