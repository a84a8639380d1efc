"""ops/forked.py: work spread over forked processes — complete results, errors and
Ctrl-C that stop every worker, dead workers reported, children that die with the parent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.errors import QuiltError
from gitquilt.ops import forked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")


def _gone(pid: int) -> bool:
    return not fsutil.pid_alive(pid)  # a zombie is gone too: it runs no more


def _pids(marks: Path) -> set[int]:
    return {int(p.name.split(".")[0]) for p in marks.iterdir()}


def test_every_item_once_with_results_from_several_processes() -> None:
    def work(i: int) -> tuple[int, int]:
        time.sleep(0.001)
        return i * i, os.getpid()

    got = dict(forked.fork_map(work, list(range(400)), 3))
    assert sorted(got) == list(range(400))
    assert all(square == i * i for i, (square, _pid) in got.items())
    assert len({pid for _sq, pid in got.values()}) == 3  # this process and two children
    assert os.getpid() in {pid for _sq, pid in got.values()}


def test_more_items_than_the_task_pipe_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked, "_TASK_PIPE_SIZE", 4096)  # 512 slots: items go out in groups
    n = 20_000
    got = dict(forked.fork_map(lambda i: i + 1, list(range(n)), 2))
    assert got == {i: i + 1 for i in range(n)}


def test_results_larger_than_a_pipe_do_not_stall() -> None:
    got = dict(forked.fork_map(lambda i: bytes([i % 256]) * (3 << 20), list(range(12)), 3))
    assert {i: (len(v), v[:1]) for i, v in got.items()} == {i: (3 << 20, bytes([i % 256])) for i in range(12)}


def test_empty_and_single_worker() -> None:
    assert list(forked.fork_map(lambda i: i, [], 4)) == []
    assert sorted(forked.fork_map(lambda i: -i, [1, 2, 3], 1)) == [(0, -1), (1, -2), (2, -3)]


def test_an_error_in_a_child_stops_the_hand_out_and_is_raised(tmp_path: Path) -> None:
    parent = os.getpid()

    def work(i: int) -> int:
        (tmp_path / f"{i}.ran").touch()
        if os.getpid() != parent and i >= 10:
            raise ValueError(f"bad item {i}")
        time.sleep(0.005)
        return i

    with pytest.raises(ValueError, match="bad item"):
        list(forked.fork_map(work, list(range(2000)), 2))
    assert len(list(tmp_path.iterdir())) < 2000  # the rest was never started


def test_an_exception_that_cannot_be_rebuilt_arrives_as_one_line() -> None:
    class NeedsTwo(Exception):
        def __init__(self, a: str, b: str) -> None:
            super().__init__(f"{a}/{b}")

    parent = os.getpid()

    def work(i: int) -> int:
        if os.getpid() != parent:
            raise NeedsTwo("left", "right")
        time.sleep(0.01)
        return i

    with pytest.raises(QuiltError, match=r"NeedsTwo: left/right"):
        list(forked.fork_map(work, list(range(50)), 2))


def test_a_child_killed_midway_is_reported() -> None:
    parent = os.getpid()

    def work(i: int) -> int:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.01)
        return i

    with pytest.raises(forked.WorkerDied, match="killed by signal 9"):
        list(forked.fork_map(work, list(range(50)), 2))


def test_a_child_that_dies_after_its_last_result_is_still_a_failure() -> None:
    """Its context (a write batch) may not have been committed: all results are not enough."""

    @contextlib.contextmanager
    def dies_on_exit() -> Iterator[None]:
        yield
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(forked.WorkerDied, match="before finishing its work"):
        list(forked.fork_map(lambda i: i, list(range(50)), 2, child_context=dies_on_exit))


def test_child_context_is_entered_and_left_in_each_child(tmp_path: Path) -> None:
    @contextlib.contextmanager
    def marked() -> Iterator[None]:
        (tmp_path / f"{os.getpid()}.in").touch()
        yield
        (tmp_path / f"{os.getpid()}.out").touch()

    got = dict(forked.fork_map(lambda i: i, list(range(100)), 3, child_context=marked))
    assert len(got) == 100
    ins = {p.stem for p in tmp_path.glob("*.in")}
    assert len(ins) == 2 and ins == {p.stem for p in tmp_path.glob("*.out")}
    assert str(os.getpid()) not in ins  # not in this process


def test_keyboardinterrupt_in_the_parent_stops_and_reaps_every_child(tmp_path: Path) -> None:
    parent = os.getpid()

    def work(i: int) -> int:
        (tmp_path / f"{os.getpid()}.{i}").touch()
        if os.getpid() == parent and i >= 20:
            raise KeyboardInterrupt
        time.sleep(0.01)
        return i

    with pytest.raises(KeyboardInterrupt):
        list(forked.fork_map(work, list(range(5000)), 3))
    children = _pids(tmp_path) - {parent}
    assert children and all(_gone(pid) for pid in children)
    assert len(list(tmp_path.iterdir())) < 5000


def test_closing_early_stops_the_children(tmp_path: Path) -> None:
    def work(i: int) -> int:
        (tmp_path / f"{os.getpid()}.{i}").touch()
        time.sleep(0.005)
        return i

    gen = forked.fork_map(work, list(range(3000)), 3)
    next(gen)
    gen.close()
    children = _pids(tmp_path) - {os.getpid()}
    assert all(_gone(pid) for pid in children)
    assert len(list(tmp_path.iterdir())) < 3000


def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, time
        from gitquilt.ops import forked
        def work(i):
            open(os.path.join({str(tmp_path)!r}, f"{{os.getpid()}}.{{i}}"), "w").close()
            time.sleep(0.05)
            return i
        for _ in forked.fork_map(work, list(range(10_000)), 3):
            pass
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while len(_pids(tmp_path) - {proc.pid}) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    children = _pids(tmp_path) - {proc.pid}
    assert len(children) == 2, "the children never started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(_gone(pid) for pid in children)


def test_usable_only_when_allowed_alone_and_not_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(forked.NO_FORK_ENV, raising=False)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(forked, "_ALLOWED", False)
    assert not forked.usable(2)  # the Python API: never forks in a caller's process
    forked.allow()
    assert forked.usable(2)
    assert not forked.usable(1)
    monkeypatch.setenv(forked.NO_FORK_ENV, "1")
    assert not forked.usable(2)
    monkeypatch.setenv(forked.NO_FORK_ENV, "0")
    assert forked.usable(2)
    monkeypatch.setattr(threading, "active_count", lambda: 2)  # another thread could hold a lock
    assert not forked.usable(2)
