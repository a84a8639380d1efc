"""ops/parallel.py: a pool that Ctrl-C and errors stop without hanging (RELIABILITY.md §29)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from gitquilt.ops.parallel import parallel_map

N = 200


def test_sigint_stops_the_pool_and_raises_keyboardinterrupt_at_a_safe_point() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    threads_before = set(threading.enumerate())  # e.g. a session-wide moto server thread
    ran: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> int:
        if i == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the pool is busy
        time.sleep(0.002)
        with lock:
            ran.append(i)
        return i

    got: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        got.extend(parallel_map(work, range(N), 4))
    assert len(ran) < N, "the queued items were not cancelled"
    assert got == list(range(len(got)))  # results in order, up to the interruption
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert set(threading.enumerate()) <= threads_before  # every worker finished before the raise


def test_error_cancels_queued_items_and_propagates() -> None:
    ran = []

    def work(i: int) -> int:
        time.sleep(0.002)
        ran.append(i)
        if i == 3:
            raise ValueError("boom")
        return i

    with pytest.raises(ValueError, match="boom"):
        list(parallel_map(work, range(N), 4))
    assert len(ran) < N
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_single_thread_and_off_main_thread_behave_like_map() -> None:
    assert list(parallel_map(lambda x: x * 2, range(5), 1)) == [0, 2, 4, 6, 8]
    out: list[int] = []
    t = threading.Thread(target=lambda: out.extend(parallel_map(lambda x: x + 1, range(50), 4)))
    t.start()
    t.join(10)
    assert out == list(range(1, 51))
