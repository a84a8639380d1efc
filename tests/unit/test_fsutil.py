"""gitquilt.fsutil: atomic writes, copies, and SafeDir's refusal to follow links."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitquilt import fsutil
from gitquilt.errors import UnsafePath
from gitquilt.fsutil import SafeDir


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the work tree holding a precious file."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "precious").write_bytes(b"precious")
    return d


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "work"
    r.mkdir()
    return r


def _write(safe: SafeDir, key: str, data: bytes, executable: bool = False) -> None:
    pfd, fd, tmp = safe.create_temp(key, executable)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    safe.replace(pfd, tmp, key)


def _snapshot(d: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else (p.read_bytes() if p.is_file() else "dir")
    return out


# -- temporary names and atomic writes -------------------------------------------------------

def test_tmp_names_carry_the_pid() -> None:
    name = fsutil.tmp_name("a.jpg")
    assert name.startswith(".a.jpg.") and name.endswith(fsutil.TMP_SUFFIX)
    assert fsutil.tmp_owner_pid(name) == os.getpid()
    assert fsutil.tmp_name("a.jpg") != name
    for other in ("a.jpg", "a.tmp", ".a.b.tmp", "report.2024.final.tmp", ".x.notanumber.abcd1234.tmp"):
        assert fsutil.tmp_owner_pid(other) is None


def test_pid_alive() -> None:
    assert fsutil.pid_alive(os.getpid())
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not fsutil.pid_alive(p.pid)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombies are told apart through /proc")
def test_a_zombie_is_not_alive() -> None:
    """A killed worker whose parent is gone may stay a zombie (an init that does not
    reap): its temporary files must still count as left by a dead process."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited, not reaped: a zombie
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    try:
        assert not fsutil.pid_alive(p.pid)
    finally:
        p.wait()


def test_atomic_write(tmp_path: Path) -> None:
    p = tmp_path / "f"
    fsutil.atomic_write_bytes(p, b"one")
    fsutil.atomic_write_bytes(p, b"two", mode=0o600)
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]
    fsutil.atomic_write_bytes(tmp_path / "g", b"x", durable=False)
    assert (tmp_path / "g").read_bytes() == b"x"


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"old")

    def boom(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        fsutil.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]  # no temporary file left behind


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(outside / "precious")
    fsutil.atomic_write_bytes(link, b"mine")
    assert not link.is_symlink() and link.read_bytes() == b"mine"
    assert (outside / "precious").read_bytes() == b"precious"


def test_sync_helpers(tmp_path: Path) -> None:
    fsutil.fsync_dir(tmp_path)
    fsutil.syncfs(tmp_path)


# -- copies --------------------------------------------------------------------------------

def _copy(tmp_path: Path, data: bytes) -> bytes:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    with open(src, "rb") as s, open(dst, "wb") as d:
        fsutil.copy_fd(s.fileno(), d.fileno(), len(data))
    return dst.read_bytes()


def test_copy_fd(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    assert _copy(tmp_path, data) == data
    assert _copy(tmp_path, b"") == b""


def test_copy_fd_falls_back_to_read_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reflink(*a: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "no")

    def no_copy_range(*a: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(fsutil.fcntl, "ioctl", no_reflink)
    monkeypatch.setattr(os, "copy_file_range", no_copy_range)
    data = os.urandom(1 << 20) + b"tail"
    assert _copy(tmp_path, data) == data


@pytest.mark.parametrize("err, again", [(errno.EOPNOTSUPP, False), (errno.EXDEV, False), (errno.EIO, True)])
def test_copy_fd_says_whether_to_try_reflink_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, again: bool
) -> None:
    calls: list[int] = []

    def failing_reflink(*a: object) -> None:
        calls.append(1)
        raise OSError(err, "no")

    monkeypatch.setattr(fsutil.fcntl, "ioctl", failing_reflink)
    (tmp_path / "src").write_bytes(b"abc")
    with open(tmp_path / "src", "rb") as s, open(tmp_path / "dst", "wb") as d:
        assert fsutil.copy_fd(s.fileno(), d.fileno(), 3) is again
        assert fsutil.copy_fd(s.fileno(), d.fileno(), 0, reflink=False) is False
    assert calls == [1]  # reflink=False skips the ioctl
    assert (tmp_path / "dst").read_bytes() == b"abc"


# -- SafeDir --------------------------------------------------------------------------------

def test_safedir_writes_below_root(root: Path) -> None:
    with SafeDir.open(root, "pkg/sub", create=True) as safe:
        _write(safe, "a/b/c.txt", b"c")
        _write(safe, "run.sh", b"#!/bin/sh\n", executable=True)
        st = safe.lstat("a/b/c.txt")
        assert st is not None and st.st_size == 1
        assert safe.lstat("a/nope") is None and safe.lstat("zz/nope") is None
    assert (root / "pkg/sub/a/b/c.txt").read_bytes() == b"c"
    assert os.stat(root / "pkg/sub/run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(root / "pkg/sub/a/b/c.txt").st_mode & stat.S_IXUSR
    assert [p.name for p in (root / "pkg/sub").iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("rel", ["pkg", "pkg/sub", "a/pkg"])
def test_safedir_open_refuses_a_symlinked_component(root: Path, outside: Path, rel: str) -> None:
    first = rel.split("/")[0]
    (root / first).symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)
    with pytest.raises(UnsafePath, match="symbolic link"):
        SafeDir.open(root, rel, create=True)
    assert _snapshot(outside) == before


def test_safedir_open_refuses_a_file_in_the_way(root: Path) -> None:
    (root / "pkg").write_bytes(b"")
    with pytest.raises(UnsafePath, match="file where a directory is expected"):
        SafeDir.open(root, "pkg/sub", create=True)


def test_safedir_missing_without_create(root: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SafeDir.open(root, "nope", create=False)


def test_dir_fd_refuses_symlinked_subdirectory(root: Path, outside: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "sub").symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)
    with SafeDir.open(root, "pkg", create=False) as safe:
        with pytest.raises(UnsafePath, match="'sub' is a symbolic link"):
            safe.create_temp("sub/x", False)
        with pytest.raises(UnsafePath):
            safe.dir_fd("sub/deeper", create=True)
        assert safe.lstat("sub/precious") is None  # not even looked at through the link
        with pytest.raises(UnsafePath):
            safe.remove_file("sub/precious")
    assert _snapshot(outside) == before


def test_dir_fd_refuses_a_symlink_to_a_directory_inside_the_package(root: Path) -> None:
    """Even a link that stays inside is refused: the key must name a real directory."""
    (root / "pkg" / "real").mkdir(parents=True)
    (root / "pkg" / "alias").symlink_to("real", target_is_directory=True)
    with SafeDir.open(root, "pkg", create=False) as safe, pytest.raises(UnsafePath):
        safe.create_temp("alias/x", False)
    assert list((root / "pkg" / "real").iterdir()) == []


def test_replace_never_writes_through_a_symlinked_file(root: Path, outside: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "a.jpg").symlink_to(outside / "precious")
    with SafeDir.open(root, "pkg", create=False) as safe:
        _write(safe, "a.jpg", b"hydrated")
    assert not (root / "pkg" / "a.jpg").is_symlink()
    assert (root / "pkg" / "a.jpg").read_bytes() == b"hydrated"
    assert (outside / "precious").read_bytes() == b"precious"


def test_replace_never_writes_through_a_hardlink(root: Path, outside: Path) -> None:
    (root / "pkg").mkdir()
    os.link(outside / "precious", root / "pkg" / "a.jpg")
    with SafeDir.open(root, "pkg", create=False) as safe:
        _write(safe, "a.jpg", b"hydrated")
    assert (root / "pkg" / "a.jpg").read_bytes() == b"hydrated"
    assert (outside / "precious").read_bytes() == b"precious"
    assert os.stat(outside / "precious").st_nlink == 1
    assert os.stat(root / "pkg" / "a.jpg").st_ino != os.stat(outside / "precious").st_ino


def test_create_temp_does_not_follow_a_planted_symlink(root: Path, outside: Path) -> None:
    """Temporary names are random and opened O_EXCL|O_NOFOLLOW: a link planted at one is an error."""
    (root / "pkg").mkdir()
    with SafeDir.open(root, "pkg", create=False) as safe:
        pfd, fd, tmp = safe.create_temp("a", False)
        os.close(fd)
        os.unlink(tmp, dir_fd=pfd)
        os.symlink(outside / "precious", tmp, dir_fd=pfd)
        with pytest.raises(FileExistsError):
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, dir_fd=pfd)
    assert (outside / "precious").read_bytes() == b"precious"


def test_replace_refuses_a_directory_in_the_way(root: Path) -> None:
    (root / "pkg" / "a" / "keep").mkdir(parents=True)
    with SafeDir.open(root, "pkg", create=False) as safe:
        pfd, fd, tmp = safe.create_temp("a", False)
        os.close(fd)
        with pytest.raises(UnsafePath, match="a directory is in the way"):
            safe.replace(pfd, tmp, "a")
    assert sorted(os.listdir(root / "pkg")) == ["a"]  # the temporary file is gone


def test_swapped_directory_after_open_cannot_redirect_writes(root: Path, outside: Path) -> None:
    """The race of RELIABILITY §15 at its worst moment: the directory was checked and opened,
    then swapped for a symlink. Writes go through the open descriptor, into the original
    directory (now renamed), never to where the link points."""
    (root / "pkg" / "sub").mkdir(parents=True)
    before = _snapshot(outside)
    with SafeDir.open(root, "pkg", create=False) as safe:
        safe.dir_fd("sub", create=False)
        os.rename(root / "pkg" / "sub", root / "pkg" / "moved")
        (root / "pkg" / "sub").symlink_to(outside, target_is_directory=True)
        _write(safe, "sub/x", b"x")
    assert _snapshot(outside) == before
    assert (root / "pkg" / "moved" / "x").read_bytes() == b"x"


def test_swapped_directory_before_open_is_refused(root: Path, outside: Path) -> None:
    (root / "pkg" / "sub").mkdir(parents=True)
    with SafeDir.open(root, "pkg", create=False) as safe:
        os.rmdir(root / "pkg" / "sub")
        (root / "pkg" / "sub").symlink_to(outside, target_is_directory=True)
        with pytest.raises(UnsafePath):
            _write(safe, "sub/x", b"x")
    assert not (outside / "x").exists()


def test_remove_file_removes_the_link_not_its_target(root: Path, outside: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "l").symlink_to(outside / "precious")
    with SafeDir.open(root, "pkg", create=False) as safe:
        safe.remove_file("l")
        safe.remove_file("absent")
        safe.remove_file("nodir/absent")
    assert not os.path.lexists(root / "pkg" / "l")
    assert (outside / "precious").read_bytes() == b"precious"


def test_remove_empty_dirs(root: Path) -> None:
    (root / "pkg" / "a" / "b" / "c").mkdir(parents=True)
    (root / "pkg" / "keep").mkdir()
    (root / "pkg" / "keep" / "f").write_bytes(b"")
    with SafeDir.open(root, "pkg", create=False) as safe:
        safe.dir_fd("a/b/c", create=False)
        safe.remove_empty_dirs(["a/b/c", "a/b", "a", "keep"])
    assert sorted(os.listdir(root / "pkg")) == ["keep"]


def test_walk_files_does_not_follow_symlinked_directories(root: Path, outside: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "sub" / "f").write_bytes(b"")
    (root / "d" / "link").symlink_to(outside, target_is_directory=True)
    (root / "d" / "flink").symlink_to(outside / "precious")
    found = {rel: e.is_symlink() for rel, e in fsutil.walk_files(root / "d")}
    assert found == {"sub/f": False, "link": True, "flink": True}


@pytest.mark.parametrize("swap", ["symlink", "vanish", "file"])
def test_directory_swapped_right_after_mkdir(root: Path, outside: Path, monkeypatch: pytest.MonkeyPatch,
                                             swap: str) -> None:
    """The narrowest race: SafeDir creates `sub` and, before it opens it, `sub` becomes a link,
    disappears or becomes a file. Always UnsafePath, never a write elsewhere."""
    real_mkdir = os.mkdir

    def racing_mkdir(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(name, mode, dir_fd=dir_fd)
        os.rmdir(name, dir_fd=dir_fd)
        if swap == "symlink":
            os.symlink(outside, name, dir_fd=dir_fd)
        elif swap == "file":
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, dir_fd=dir_fd))

    (root / "pkg").mkdir()
    before = _snapshot(outside)
    with SafeDir.open(root, "pkg", create=False) as safe:
        monkeypatch.setattr(os, "mkdir", racing_mkdir)
        with pytest.raises(UnsafePath):
            safe.create_temp("sub/x", False)
    assert _snapshot(outside) == before


def test_set_executable(root: Path) -> None:
    (root / "pkg" / "d").mkdir(parents=True)
    f = root / "pkg" / "d" / "run.sh"
    f.write_bytes(b"#!/bin/sh\n")
    f.chmod(0o640)
    with SafeDir.open(root, "pkg", create=False) as safe:
        safe.set_executable("d/run.sh", True, umask=0o022)
        assert stat.S_IMODE(f.stat().st_mode) == 0o751
        safe.set_executable("d/run.sh", False, umask=0o022)
        assert stat.S_IMODE(f.stat().st_mode) == 0o640
        with pytest.raises(FileNotFoundError):
            safe.set_executable("nodir/x", True, umask=0o022)


def test_set_executable_never_follows_a_link(root: Path, outside: Path) -> None:
    """A file swapped for a link between checkout's lstat and its chmod: the link target's
    mode must not change (chmod by name would follow the link)."""
    (root / "pkg").mkdir()
    (root / "pkg" / "a").symlink_to(outside / "precious")
    (root / "pkg" / "dir").mkdir()
    os.mkfifo(root / "pkg" / "fifo")  # opened O_NONBLOCK: must not hang
    mode = stat.S_IMODE((outside / "precious").stat().st_mode)
    with SafeDir.open(root, "pkg", create=False) as safe:
        with pytest.raises(UnsafePath, match="symbolic link"):
            safe.set_executable("a", True, umask=0o022)
        for name in ("dir", "fifo"):
            with pytest.raises(UnsafePath, match="not a regular file"):
                safe.set_executable(name, True, umask=0o022)
    assert stat.S_IMODE((outside / "precious").stat().st_mode) == mode
