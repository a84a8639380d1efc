"""RELIABILITY.md §2 items 11–15: symlink and hardlink attacks during hydration.

The package `images` (a.jpg, sub/b.jpg, h/post-checkout) is added once; each test
removes its directory, plants a link, runs checkout and checks that nothing was written
through the link: the `outside` directory next to the repository and `.git/hooks` stay
byte-for-byte (and inode-for-inode) unchanged.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitquilt.errors import QuiltError
from gitquilt.store import Store
from tests.conftest import Repo
from tests.security.hostile import World, cache_root, snapshot

FILES = {"a.jpg": b"image a", "sub/b.jpg": b"image b", "h/post-checkout": b"#!/bin/sh\ntouch HOOK-RAN\n"}


@pytest.fixture(scope="module")
def added(shared: World) -> World:
    for key, data in FILES.items():
        p = shared.root / "images" / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (shared.root / "images" / "h" / "post-checkout").chmod(0o755)
    rc, out, err = shared.quilt("add", "--no-stage", "images")
    assert rc == 0, err
    return shared


@pytest.fixture
def world(added: World) -> Iterator[World]:
    root = added.root
    if os.path.islink(root / "images") or (root / "images").is_file():
        os.unlink(root / "images")
    shutil.rmtree(root / "images", ignore_errors=True)
    (root / "images").mkdir()
    outside = root.parent / "outside"
    shutil.rmtree(outside, ignore_errors=True)
    outside.mkdir()
    (outside / "precious").write_bytes(b"precious")
    (outside / "sub").mkdir()
    yield added


def _outside(world: World) -> Path:
    return world.root.parent / "outside"


def _checkout(world: World, *args: str) -> tuple[int, str]:
    rc, _out, err = world.quilt("checkout", *args, "images")
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def _refused_without_force(world: World, *expected: str) -> dict[str, object]:
    before = snapshot(world.base)
    rc, err = _checkout(world)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1, err
    for e in expected:
        assert e in err, err
    assert snapshot(world.base) == before
    return before


# §2.11
@pytest.mark.parametrize("target", ["../outside", "../outside/sub", ".git/hooks", "/"])
def test_package_directory_is_a_symlink(world: World, target: str) -> None:
    os.rmdir(world.root / "images")
    (world.root / "images").symlink_to(target, target_is_directory=True)
    before = _refused_without_force(world, "images is a symbolic link")
    rc, err = _checkout(world, "--force")
    assert rc == 1 and "symbolic link" in err
    assert snapshot(world.base) == before


@pytest.mark.parametrize("target", ["../../outside", "../../outside/sub", "../../..", "../../.git/hooks"])
def test_subdirectory_is_a_symlink(world: World, target: str) -> None:
    (world.root / "images" / "sub").symlink_to(target, target_is_directory=True)
    _refused_without_force(world, "images/sub")
    outside_before = snapshot(_outside(world))
    hooks_before = snapshot(world.root / ".git" / "hooks")
    _checkout(world, "--force")  # may refuse or replace the link; it must never write through it
    assert snapshot(_outside(world)) == outside_before
    assert snapshot(world.root / ".git" / "hooks") == hooks_before
    assert not (world.root.parent / "b.jpg").exists() and not (world.root / "b.jpg").exists()


def test_parent_of_the_package_is_a_symlink(repo: Repo) -> None:
    """`checkout --rev` of data/images while the work tree's `data` is a link elsewhere."""
    outside = repo.root.parent / "outside"
    outside.mkdir()
    repo.write("data/images/a.jpg", b"a")
    repo.quilt("add", "data/images", check=True)
    repo.git("commit", "-qm", "data")
    shutil.rmtree(repo.root / "data")
    (repo.root / "data").symlink_to(outside, target_is_directory=True)
    before = snapshot(repo.root.parent)
    r = repo.quilt("checkout", "--rev", "HEAD", "data/images")
    assert r.returncode == 1
    assert "symbolic link" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert snapshot(repo.root.parent) == before


# §2.12
def test_target_file_is_a_symlink_to_outside(world: World) -> None:
    (world.root / "images" / "a.jpg").symlink_to(_outside(world) / "precious")
    _refused_without_force(world, "images/a.jpg")
    rc, err = _checkout(world, "--force")
    assert rc == 0, err
    a = world.root / "images" / "a.jpg"
    assert not a.is_symlink() and a.read_bytes() == FILES["a.jpg"]
    assert (_outside(world) / "precious").read_bytes() == b"precious"


def test_target_file_symlink_through_the_executable(repo: Repo) -> None:
    outside = repo.root.parent / "outside"
    outside.mkdir()
    (outside / ".bashrc").write_bytes(b"alias ls=ls\n")
    repo.write("images/a.jpg", b"image a")
    repo.quilt("add", "images", check=True)
    (repo.root / "images" / "a.jpg").unlink()
    (repo.root / "images" / "a.jpg").symlink_to(outside / ".bashrc")
    r = repo.quilt("checkout", "images")
    assert r.returncode == 1 and "images/a.jpg" in r.stderr
    assert (repo.root / "images" / "a.jpg").is_symlink()
    r = repo.quilt("checkout", "--force", "images")
    assert r.returncode == 0, r.stderr
    assert (outside / ".bashrc").read_bytes() == b"alias ls=ls\n"
    assert (repo.root / "images" / "a.jpg").read_bytes() == b"image a"


# §2.13
def test_target_file_is_a_hardlink_to_outside(world: World) -> None:
    precious = _outside(world) / "precious"
    os.link(precious, world.root / "images" / "a.jpg")
    _refused_without_force(world, "images/a.jpg")
    rc, err = _checkout(world, "--force")
    assert rc == 0, err
    assert precious.read_bytes() == b"precious"
    assert (world.root / "images" / "a.jpg").read_bytes() == FILES["a.jpg"]
    assert os.stat(precious).st_nlink == 1


def test_hardlink_holding_a_cached_version_is_replaced_not_truncated(world: World) -> None:
    """A file whose bytes are in the cache is replaced without --force: by rename, so the
    other name of the same inode keeps its bytes."""
    old = _outside(world) / "old-version"
    old.write_bytes(b"an older a.jpg")
    Store(cache_root(world.root)).put_bytes(b"an older a.jpg")
    os.link(old, world.root / "images" / "a.jpg")
    ino = os.stat(old).st_ino
    rc, err = _checkout(world)
    assert rc == 0, err
    assert old.read_bytes() == b"an older a.jpg" and os.stat(old).st_ino == ino
    assert (world.root / "images" / "a.jpg").read_bytes() == FILES["a.jpg"]


# §2.14
def test_symlink_to_git_hooks_inside_the_package(world: World) -> None:
    (world.root / "images" / "h").symlink_to("../.git/hooks", target_is_directory=True)
    _refused_without_force(world, "images/h")
    hooks_before = snapshot(world.root / ".git" / "hooks")
    _checkout(world, "--force")
    assert snapshot(world.root / ".git" / "hooks") == hooks_before
    assert not (world.root / ".git" / "hooks" / "post-checkout").exists()


def test_no_hook_runs_after_the_attack(repo: Repo) -> None:
    """The whole story through git: after the refused (and the forced) checkout, git's own
    checkout and commit run no hook the package tried to plant."""
    repo.write("images/h/post-checkout", b"#!/bin/sh\ntouch HOOK-RAN\n", mode=0o755)
    repo.write("images/h/pre-commit", b"#!/bin/sh\ntouch HOOK-RAN\n", mode=0o755)
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "images")
    shutil.rmtree(repo.root / "images" / "h")
    (repo.root / "images" / "h").symlink_to("../.git/hooks", target_is_directory=True)
    assert repo.quilt("checkout", "images").returncode == 1
    repo.quilt("checkout", "--force", "images")
    repo.git("commit", "-q", "--allow-empty", "-m", "next")
    repo.git("checkout", "-q", "-b", "other")
    assert not (repo.root / "HOOK-RAN").exists()
    assert not (repo.root / ".git" / "hooks" / "post-checkout").exists()
    assert not (repo.root / ".git" / "hooks" / "pre-commit").exists()


def test_executable_bit_is_repaired_in_place(world: World) -> None:
    """Right bytes, wrong x bit: checkout fixes the mode through a no-follow descriptor,
    without rewriting the file."""
    assert _checkout(world)[0] == 0
    hook, a = world.root / "images" / "h" / "post-checkout", world.root / "images" / "a.jpg"
    assert hook.stat().st_mode & 0o100 and not a.stat().st_mode & 0o100
    inodes = (hook.stat().st_ino, a.stat().st_ino)
    hook.chmod(0o644)
    a.chmod(0o755)
    rc, err = _checkout(world)
    assert rc == 0, err
    assert hook.stat().st_mode & 0o111 and not a.stat().st_mode & 0o111
    assert (hook.stat().st_ino, a.stat().st_ino) == inodes


def _remove_without_following(directory: Path, sub: str, name: str) -> None:
    """Unlink directory/sub/name unless sub is (at this instant) a symlink. The test must not
    race itself: a path-based unlink could follow the swapped-in link."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return
    finally:
        os.close(dfd)
    try:
        os.unlink(name, dir_fd=sfd)
    except OSError:
        pass
    finally:
        os.close(sfd)


# §2.15
def test_directory_swapped_for_a_symlink_during_checkout(world: World) -> None:
    """A thread keeps swapping images/sub between a real directory and a link to outside while
    checkouts run. Whatever each checkout does (succeed or refuse), nothing lands outside.
    See docs/SECURITY.md for why: every write is relative to a directory descriptor opened
    with O_NOFOLLOW."""
    from gitquilt.ops.checkout import checkout
    from gitquilt.ops.workspace import Workspace

    root = world.root
    outside = _outside(world)
    before = snapshot(outside)
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        sub, real = root / "images" / "sub", root / "images" / ".sub-real"
        while not stop.is_set():
            try:
                if sub.is_dir() and not sub.is_symlink():
                    os.rename(sub, real)
                    os.symlink(outside, sub)
                    swaps[0] += 1
                    time.sleep(0.0005)
                    os.unlink(sub)
                    os.rename(real, sub)
                else:
                    time.sleep(0.0001)
            except OSError:
                pass

    ws = Workspace.open(root)
    ref = ws.package_ref(str(root / "images"))
    t = threading.Thread(target=swapper)
    t.start()
    outcomes: set[str] = set()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            _remove_without_following(root / "images", "sub", "b.jpg")  # so that checkout writes again
            try:
                checkout(ws, [ref], force=True)
                outcomes.add("ok")
            except (QuiltError, OSError) as exc:
                outcomes.add(type(exc).__name__)
    finally:
        stop.set()
        t.join()
        ws.close()
    assert swaps[0] > 0, "the race never happened"
    assert snapshot(outside) == before, f"a write went through the link (outcomes: {outcomes})"
