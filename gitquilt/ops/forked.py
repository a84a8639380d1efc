"""Work spread over forked worker processes: the many-small-files paths of the CLI
(hashing in ``add`` and ``status``, copying in ``checkout``).

Why processes: those paths make a system call every few microseconds per file (open,
read, write, link, close), and each one releases and retakes Python's GIL. Two threads
on two cores then spend their time handing the GIL to each other (a futex wake, a
context switch and a futex wait per call): a checkout of 10,000 files took 1.6 s of
CPU in two threads against 1.0 s in one, and no less wall time, while two forked
processes took 0.75 s (docs/architecture.md, "Worker processes"). Processes share no
GIL, and a fork of the command's small process costs about a millisecond.

Forking is done only where it is safe:

- in the command-line process (:func:`allow`, called by ``cli.main``), never inside a
  caller's process through the Python API (a training script may hold threads, GPU
  contexts or a large heap a fork would copy page tables for);
- on Linux, where the child can ask to die with its parent (``PR_SET_PDEATHSIG``);
- when no other Python thread runs (a lock held by another thread at the fork would
  stay held forever in the child), so a pull that still downloads uses threads;
- unless ``GITQUILT_NO_FORK=1``.

Otherwise :func:`ops.parallel.parallel_map` runs the same function in threads.

Protocol: items are handed out one task at a time through a pipe of 4-byte indices
(a task is one item, or a run of items when there are more than the pipe holds), so a
large file does not hold up a fixed share of the others; each child sends back
``(index, result)`` frames through a pipe of its own; the parent works on items too
and drains the children's pipes between its own. An error in any worker stops the
hand-out (the pipe is emptied), lets running items finish, and is raised in the parent
once every child has exited. Ctrl-C stops every worker the same way; a child killed
(or the parent killed: its children die with it) loses only its running item, which
the parent reports as an error — rerunning the command completes the work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager as ContextManager
from typing import Any, TypeVar

from gitquilt.errors import QuiltError

T = TypeVar("T")
R = TypeVar("R")

_ALLOWED = False
NO_FORK_ENV = "GITQUILT_NO_FORK"
_INDEX_SIZE = 4  # a task index in the pipe: uint32, little-endian
_FRAME_SIZE = 4  # the length before each result frame: uint32, little-endian
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux; the names came in Python 3.10)
_F_GETPIPE_SZ = 1032
_RESULT_PIPE_SIZE = 1 << 20
#: The task pipe's size asked for (Linux allows up to 1 MiB without privileges).
_TASK_PIPE_SIZE = 1 << 20


def allow(enabled: bool = True) -> None:
    """Let this process fork workers (the console script calls this; nothing else should)."""
    global _ALLOWED
    _ALLOWED = enabled


def usable(workers: int) -> bool:
    """True if :func:`fork_map` may run now with ``workers`` workers (see the module doc)."""
    return (
        _ALLOWED
        and workers > 1
        and sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and os.environ.get(NO_FORK_ENV, "") in ("", "0")
    )


class WorkerDied(QuiltError):
    """A worker process ended without finishing its items."""


def fork_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    child_context: Callable[[], ContextManager[Any]] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> Generator[tuple[int, R], None, None]:
    """Yield ``(i, fn(items[i]))`` for every item, in no particular order, computed by
    this process and ``workers - 1`` forked children (check :func:`usable` first).

    ``fn``'s results must pickle. ``child_context``, if given, is entered in each child
    before its first item and left after its last one (an exception leaves it with
    that exception): a child's own write batch, committed before the child reports
    that it is done. ``after_fork`` is called in this process once the children run
    (it may start threads). Close the generator when stopping early
    (``contextlib.closing``); nothing is forked before the first item is asked for.
    """
    count = len(items)
    if count == 0:
        return
    workers = max(1, min(workers, count))
    task_r, task_w = os.pipe()
    try:
        # every task is in the pipe before the first fork, and its write end is closed:
        # a worker reads tasks until the pipe is empty (end of file), nobody ever waits
        # for the parent to hand out more, and an error only has to empty the pipe
        group = _fill_tasks(task_w, count)
    finally:
        os.close(task_w)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    die_with_parent = _pdeathsig_setter()
    children: dict[int, int] = {}  # result pipe's read end -> child pid
    try:
        for _ in range(workers - 1):
            result_r, result_w = os.pipe()
            _grow_pipe(result_w, _RESULT_PIPE_SIZE)  # fewer stalls while the parent works
            try:
                pid = os.fork()
            except OSError:  # out of processes or memory: fewer workers
                os.close(result_r)
                os.close(result_w)
                break
            if pid == 0:  # the child: never returns
                _child(fn, items, group, task_r, result_r, result_w, list(children), parent, die_with_parent,
                       child_context)
            os.close(result_w)
            os.set_blocking(result_r, False)
            children[result_r] = pid
        if after_fork is not None:
            after_fork()
    except BaseException:
        _empty(task_r)
        _stop_children(children, signal.SIGKILL)
        _reap(children)
        _close_all(task_r, children)
        raise
    yield from _parent(fn, items, group, task_r, children)


def _fill_tasks(task_w: int, count: int) -> int:
    """Write the task indices into the (empty) pipe; return how many items one task
    covers: 1 unless there are more items than the pipe holds indices."""
    capacity = _grow_pipe(task_w, _TASK_PIPE_SIZE) or 4096  # PIPE_BUF: any pipe holds that much
    slots = max(1, capacity // 2 // _INDEX_SIZE)  # half: never rely on the last page
    group = -(-count // slots)
    tasks = b"".join(t.to_bytes(_INDEX_SIZE, "little") for t in range(-(-count // group)))
    view = memoryview(tasks)
    while view:
        view = view[os.write(task_w, view):]
    return group


def _grow_pipe(fd: int, size: int) -> int | None:
    """Ask for a pipe buffer of ``size`` bytes; the size granted, or None if unknown."""
    import fcntl  # here, not at module level: the CLI imports this module for every command

    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    try:
        return fcntl.fcntl(fd, _F_GETPIPE_SZ)
    except OSError:
        return None


def _run_tasks(
    fn: Callable[[Any], Any], items: Sequence[Any], group: int, task_r: int
) -> Generator[tuple[int, Any], None, None]:
    """Take tasks from the pipe until it is empty; yield ``(i, fn(items[i]))`` for each item."""
    while True:
        raw = os.read(task_r, _INDEX_SIZE)  # every write was whole indices: never a part of one
        if not raw:
            return
        task = int.from_bytes(raw, "little")
        for i in range(task * group, min((task + 1) * group, len(items))):
            yield i, fn(items[i])


def _parent(
    fn: Callable[[T], R], items: Sequence[T], group: int, task_r: int, children: dict[int, int]
) -> Generator[tuple[int, R], None, None]:
    import pickle
    import select

    buffers: dict[int, bytearray] = {fd: bytearray() for fd in children}
    open_pipes = set(children)
    ready: deque[tuple[int, Any]] = deque()
    failure: list[tuple[BaseException, str]] = []
    received = 0

    def drain(fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                open_pipes.discard(fd)
                return
            buf = buffers[fd]
            buf += chunk
            while len(buf) >= _FRAME_SIZE:
                n = int.from_bytes(buf[:_FRAME_SIZE], "little")
                if len(buf) < _FRAME_SIZE + n:
                    break
                message = pickle.loads(bytes(buf[_FRAME_SIZE:_FRAME_SIZE + n]))
                del buf[:_FRAME_SIZE + n]
                if message[0] == "ok":
                    ready.append((message[1], message[2]))
                elif not failure:
                    failure.append(_rebuild_error(message))

    def collect(wait: bool, raising: bool = True) -> None:
        if wait:
            readable, _, _ = select.select(list(open_pipes), [], [], 1.0)
        else:
            readable = list(open_pipes)
        for fd in readable:
            drain(fd)
        if failure and raising:
            raise failure[0][0]

    try:
        for i, result in _run_tasks(fn, items, group, task_r):
            received += 1
            yield i, result
            collect(wait=False)
            while ready:
                received += 1
                yield ready.popleft()
        while open_pipes:
            collect(wait=True)
            while ready:
                received += 1
                yield ready.popleft()
        statuses = _reap(children)
        # a child that sent every result may still have died before its context was
        # left (a write batch not yet durable): only a clean exit counts
        if received != len(items) or any(status != 0 for status in statuses.values()):
            raise WorkerDied(_death_message(statuses, len(items) - received))
    except BaseException as exc:
        # no new items: empty the task pipe; interrupted children stop their running item
        _empty(task_r)
        if isinstance(exc, KeyboardInterrupt):
            _stop_children(children, signal.SIGINT)
        # wait for the running items (their results are dropped), then for the exits
        while open_pipes:
            with contextlib.suppress(Exception):
                collect(wait=True, raising=False)
        _reap(children)
        if failure and os.environ.get("GITQUILT_DEBUG", "") not in ("", "0"):
            sys.stderr.write(failure[0][1])  # the child's traceback
        raise
    finally:
        _close_all(task_r, children)


def _close_all(task_r: int, children: dict[int, int]) -> None:
    for fd in (task_r, *children):
        with contextlib.suppress(OSError):
            os.close(fd)


def _child(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    group: int,
    task_r: int,
    result_r: int,
    result_w: int,
    siblings: list[int],
    parent: int,
    die_with_parent: Callable[[], None] | None,
    child_context: Callable[[], ContextManager[Any]] | None,
) -> None:
    """Run tasks from ``task_r`` until it is empty; report each result (and any error)
    through ``result_w``. Ends the process: never returns."""
    code = 1
    try:
        os.close(result_r)
        for fd in siblings:  # the parent's read ends of earlier children's pipes
            os.close(fd)
        signal.signal(signal.SIGINT, _interrupted_once)
        if die_with_parent is not None:
            die_with_parent()
        if os.getppid() != parent:  # the parent died before that took effect
            raise KeyboardInterrupt
        with child_context() if child_context is not None else contextlib.nullcontext():
            for i, result in _run_tasks(fn, items, group, task_r):
                _send(result_w, ("ok", i, result))
                if os.getppid() != parent:  # the parent is gone (no PDEATHSIG here): stop
                    raise KeyboardInterrupt
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        code = 130 if isinstance(exc, KeyboardInterrupt) else 1
        with contextlib.suppress(BaseException):
            _send(result_w, _error_message(exc))
    finally:
        os._exit(code)


def _interrupted_once(_sig: int, _frame: object) -> None:
    # a second Ctrl-C (the terminal's and the parent's) must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A function that asks the kernel to kill the calling process when its parent dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), or None where that cannot be had. Made in
    the parent, so no child imports anything."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _send(fd: int, message: tuple[Any, ...]) -> None:
    import pickle

    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(len(data).to_bytes(_FRAME_SIZE, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def _error_message(exc: BaseException) -> tuple[Any, ...]:
    import pickle
    import traceback

    text = "".join(traceback.format_exception(exc))
    blob: bytes | None = None
    try:
        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # some exceptions pickle but cannot be rebuilt (required arguments)
        blob = data
    except Exception:  # noqa: BLE001, S110 - the summary is sent instead
        pass
    return ("error", blob, f"{type(exc).__name__}: {exc}", text)


def _rebuild_error(message: tuple[Any, ...]) -> tuple[BaseException, str]:
    import pickle

    _kind, blob, summary, text = message
    if blob is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(blob)
            if isinstance(exc, BaseException):
                return exc, text
    return QuiltError(summary), text


def _empty(fd: int) -> None:
    """Read and drop what is left in the task pipe (a non-blocking read end)."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 1 << 16):
            pass


def _stop_children(children: dict[int, int], sig: int) -> None:
    for pid in children.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(children: dict[int, int]) -> dict[int, int]:
    """Wait for every child; their wait statuses by pid."""
    statuses: dict[int, int] = {}
    for pid in children.values():
        while True:
            try:
                _pid, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = 0
            except InterruptedError:
                continue
            statuses[pid] = status
            break
    return statuses


def _death_message(statuses: dict[int, int], lost: int) -> str:
    how = []
    for pid, status in statuses.items():
        if os.WIFSIGNALED(status):
            how.append(f"{pid} killed by signal {os.WTERMSIG(status)}")
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
            how.append(f"{pid} exited with {os.WEXITSTATUS(status)}")
    detail = "; ".join(how) or "no reason given"
    what = f"before finishing {lost} item(s)" if lost else "before finishing its work"
    return f"a worker process ended {what} ({detail}); rerun the command to finish"
