"""File-system primitives: atomic writes, durable renames, fast copies, safe directories.

Writes never happen in place: bytes go to a temporary file in the destination
directory, are flushed, and are renamed (or linked) over the final name, so a crash
leaves either the old file or the new one. Package directories are walked one
component at a time with ``O_NOFOLLOW`` relative to directory file descriptors, so a
symlink planted anywhere on the way is refused instead of followed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from gitquilt.errors import QuiltError, UnsafePath

FICLONE = 0x40049409
TMP_SUFFIX = ".tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def tmp_name(name: str) -> str:
    """A unique temporary name beside ``name``; the pid lets cleanup spot dead writers."""
    # cut by UTF-8 bytes, not characters: 100 emoji would overflow NAME_MAX (255 bytes)
    short = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore")
    return f".{short}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def tmp_owner_pid(name: str) -> int | None:
    """The pid embedded by :func:`tmp_name`, or None (also for users' files such as
    ``report.2024.final.tmp``, which do not have the exact shape of our names)."""
    if not name.startswith("."):
        return None
    parts = name.rsplit(".", 3)
    if (
        len(parts) == 4 and parts[3] == TMP_SUFFIX[1:] and parts[1].isdigit() and parts[1].isascii()
        and len(parts[2]) == 8 and all(c in "0123456789abcdef" for c in parts[2])
    ):
        return int(parts[1])
    return None


def remove_dead_tmp(directory: Path, names: list[str]) -> int:
    """Remove temporary files that dead processes left beside ``names`` in ``directory``."""
    prefixes = tuple(f".{n.encode('utf-8', 'surrogateescape')[:100].decode('utf-8', 'ignore')}." for n in names)
    removed = 0
    try:
        entries = os.listdir(directory)
    except OSError:
        return 0
    for entry in entries:
        if not entry.startswith(prefixes):
            continue
        pid = tmp_owner_pid(entry)
        if pid is not None and not pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))
                removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and can still run. A zombie (dead, not yet reaped:
    e.g. a worker killed with its parent, waiting for an init that may never reap it)
    writes nothing more, so it counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): signal 0 is all we know
    return state not in (b"Z", b"X")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or link in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush one file's data to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_libc: ctypes.CDLL | None = None


def syncfs(path: str | os.PathLike[str]) -> None:
    """Flush every dirty page of the file system holding ``path`` (one call for a batch)."""
    global _libc
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            if _libc.syncfs(fd) == 0:
                return
        except (OSError, AttributeError):
            pass
        os.sync()
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(tmp_name(path.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


# errors by which FICLONE says "never on this pair of file systems" (not "not this file")
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS})


def copy_fd(src_fd: int, dst_fd: int, size: int, reflink: bool = True) -> bool:
    """Copy ``size`` bytes: reflink if the file system can, else an in-kernel copy.

    Returns whether a reflink is worth trying for the next file between the same file
    systems: a caller copying many files passes that back as ``reflink`` and so skips
    one failing ``ioctl`` per file where reflinks are unsupported (ext4).
    """
    if reflink:
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
            return True
        except OSError as exc:
            reflink = exc.errno not in _NO_REFLINK
    copied = 0
    try:
        while copied < size:
            n = os.copy_file_range(src_fd, dst_fd, size - copied)
            if n == 0:
                break
            copied += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
            raise
        os.lseek(src_fd, copied, os.SEEK_SET)
        os.lseek(dst_fd, copied, os.SEEK_SET)
        with os.fdopen(os.dup(src_fd), "rb") as s, os.fdopen(os.dup(dst_fd), "wb") as d:
            shutil.copyfileobj(s, d, 1 << 20)
        return reflink
    if copied != size:
        raise QuiltError(f"short copy: {copied} of {size} bytes")
    return reflink


_LIMIT_RAISED = False


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard limit (once per process).

    Hydration keeps a descriptor per package directory; an image data set with a
    thousand class directories would hit a soft limit of 1024.
    """
    global _LIMIT_RAISED
    if _LIMIT_RAISED:
        return
    _LIMIT_RAISED = True
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


class SafeDir:
    """A directory opened without following symlinks, for writing package files.

    All paths below it are walked component by component with ``O_NOFOLLOW``;
    a symlink or a non-directory on the way raises :class:`UnsafePath`. A symlink
    swapped in after the check still cannot redirect writes: every open is relative
    to an already-open directory descriptor and refuses links (docs/SECURITY.md).
    """

    def __init__(self, fd: int, label: str) -> None:
        self.fd = fd
        self.label = label
        self._subdirs: dict[str, int] = {"": fd}
        self._lock = threading.RLock()
        raise_open_file_limit()

    @classmethod
    def open(cls, root: Path, rel: str, create: bool) -> "SafeDir":
        """Open ``root/rel`` walking each component of ``rel`` without following links."""
        fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        for part in [p for p in rel.split("/") if p]:
            fd = _open_child_dir(fd, part, create, rel)  # closes the parent, even on error
        return cls(fd, rel)

    def close(self) -> None:
        for fd in set(self._subdirs.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._subdirs.clear()

    def __enter__(self) -> "SafeDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dir_fd(self, reldir: str, create: bool) -> int | None:
        """Descriptor of subdirectory ``reldir`` (cached); None if absent and not created.

        One descriptor stays open per directory until :meth:`close`, so a package of
        many directories needs a generous open-file limit (see raise_open_file_limit).
        """
        fd = self._subdirs.get(reldir)
        if fd is not None:
            return fd
        with self._lock:
            try:
                return self._open_dir_fd(reldir, create)
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                import resource

                limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                raise QuiltError(
                    f"{self.label}: too many directories to hold open (open-file limit {limit}); "
                    "raise it with 'ulimit -n' and rerun"
                ) from None

    def _open_dir_fd(self, reldir: str, create: bool) -> int | None:
        fd = self._subdirs.get(reldir)
        if fd is not None:
            return fd
        parent, _, name = reldir.rpartition("/")
        pfd = self.dir_fd(parent, create)
        if pfd is None:
            return None
        try:
            fd = _open_child_dir(os.dup(pfd), name, create, f"{self.label}/{reldir}", close_parent=True)
        except FileNotFoundError:
            return None
        self._subdirs[reldir] = fd
        return fd

    def lstat(self, key: str) -> os.stat_result | None:
        """lstat of ``key`` below this directory, or None when it (or a parent) is absent."""
        parent, _, name = key.rpartition("/")
        try:
            pfd = self.dir_fd(parent, create=False)
        except UnsafePath:
            return None
        if pfd is None:
            return None
        try:
            return os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def create_temp(self, key: str, executable: bool) -> tuple[int, int, str]:
        """Create a temporary file beside ``key``; return (dir fd, file fd, temp name)."""
        parent, _, name = key.rpartition("/")
        pfd = self.dir_fd(parent, create=True)
        if pfd is None:  # its parent vanished while we created it
            raise UnsafePath(f"{self.label}/{parent}: directory changed while files were written into it")
        tmp = tmp_name(name)
        mode = 0o777 if executable else 0o666
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)
        return pfd, fd, tmp

    def replace(self, pfd: int, tmp: str, key: str) -> None:
        """Rename a temporary file over ``key`` (replacing a link or file, never writing through it)."""
        name = key.rpartition("/")[2]
        try:
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except IsADirectoryError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise UnsafePath(f"{self.label}/{key}: a directory is in the way") from None

    def discard(self, pfd: int, tmp: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=pfd)

    def set_executable(self, key: str, executable: bool, umask: int) -> None:
        """Set (as ``umask`` allows) or clear the x bits of the regular file ``key``.

        Works on a descriptor opened with ``O_NOFOLLOW``: a link swapped in after the
        caller's ``lstat`` is refused, where ``chmod`` by name would follow it.
        """
        parent, _, name = key.rpartition("/")
        pfd = self.dir_fd(parent, create=False)
        if pfd is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", f"{self.label}/{key}")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=pfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{self.label}/{key}: is a symbolic link; refusing to follow it") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{self.label}/{key}: not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            os.fchmod(fd, mode | (0o111 & ~umask) if executable else mode & ~0o111)
        finally:
            os.close(fd)

    def remove_file(self, key: str) -> None:
        parent, _, name = key.rpartition("/")
        pfd = self.dir_fd(parent, create=False)
        if pfd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=pfd)

    def remove_empty_dirs(self, reldirs: list[str]) -> None:
        """Remove the given subdirectories if they are empty, deepest first."""
        for reldir in sorted(set(reldirs), key=lambda d: d.count("/"), reverse=True):
            parent, _, name = reldir.rpartition("/")
            pfd = self.dir_fd(parent, create=False)
            if pfd is None or not name:
                continue
            fd = self._subdirs.pop(reldir, None)
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=pfd)


def _open_child_dir(parent_fd: int, name: str, create: bool, label: str, close_parent: bool = True) -> int:
    try:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent_fd)
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:  # removed again right after mkdir: someone is racing us
                raise UnsafePath(f"{label}: '{name}' changed while it was being created; refusing it") from None
            except OSError as exc:  # a link or file swapped in right after mkdir
                _refuse_non_directory(parent_fd, name, label, exc)
                raise
        except (NotADirectoryError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            _refuse_non_directory(parent_fd, name, label, exc)
            raise
    finally:
        if close_parent:
            os.close(parent_fd)


def _refuse_non_directory(parent_fd: int, name: str, label: str, exc: OSError) -> None:
    """Raise :class:`UnsafePath` when ``name`` is a symlink or a file; else re-raise ``exc``."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except OSError:
        raise exc from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{label}: '{name}' is a symbolic link; refusing to follow it") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{label}: '{name}' is a file where a directory is expected") from None


def walk_files(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (relative POSIX path, DirEntry) for every non-directory below ``root``, unsorted.

    Symlinked directories are not followed; symlinks are yielded as entries.
    """
    stack = [("", str(root))]
    while stack:
        prefix, path = stack.pop()
        with os.scandir(path) as it:
            for entry in it:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((rel + "/", entry.path))
                else:
                    yield rel, entry
