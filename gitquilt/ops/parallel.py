"""Thread pools that Ctrl-C stops promptly and safely.

A ``KeyboardInterrupt`` raised in the main thread while it is inside
``ThreadPoolExecutor`` internals (submitting, or waiting on a future) can leave one of
the executor's locks held; the workers then block on it and the pool's shutdown waits
forever — a hang instead of exit 130 (seen in tests/faults/test_crash.py). So while a
pool runs, SIGINT only sets a flag; the main thread polls it, cancels what is queued,
waits for the running items, and only then raises ``KeyboardInterrupt``, at a point
where no lock is held.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: How often (seconds) a main thread waiting on a slow item checks for Ctrl-C.
POLL_SECONDS = 0.1


def parallel_map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Generator[R, None, None]:
    """Like ``ThreadPoolExecutor.map`` (results in order), but safe to interrupt.

    On an exception from ``fn`` or on Ctrl-C, queued items are cancelled and running
    ones finish before the exception propagates, so nothing keeps writing behind the
    caller's cleanup. Close the iterator when stopping early (``contextlib.closing``).
    """
    if threads <= 1:
        yield from map(fn, items)
        return
    interrupted = threading.Event()
    previous = _defer_sigint(interrupted)
    pool = ThreadPoolExecutor(threads)
    try:
        futures: list[Future[R]] = []
        for item in items:
            if interrupted.is_set():
                break
            futures.append(pool.submit(fn, item))
        for future in futures:
            while True:
                if interrupted.is_set():
                    raise KeyboardInterrupt
                try:
                    result = future.result(timeout=POLL_SECONDS)
                    break
                except TimeoutError:
                    continue
            yield result
        if interrupted.is_set():
            raise KeyboardInterrupt
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if previous is not None:
            try:
                signal.signal(signal.SIGINT, previous)  # type: ignore[arg-type]
            except ValueError:  # closed from another thread: nothing to restore there
                pass


def _defer_sigint(flag: threading.Event) -> object | None:
    """Make SIGINT set ``flag``; return the handler to restore (None if not installed).

    Only the main thread can install handlers, and a caller's own handler is respected.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return None
        return signal.signal(signal.SIGINT, lambda _sig, _frame: flag.set())
    except (ValueError, OSError):
        return None


def numbered(results: Iterator[R]) -> Generator[tuple[int, R], None, None]:
    """``(i, result)`` for :func:`parallel_map`'s results (numbered like
    :func:`ops.forked.fork_map`'s); closing this closes ``results``."""
    try:
        yield from enumerate(results)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
