"""``pull`` writes large files into the work tree while the other fragments download.

Checkout plans first; each large file whose place is empty is copied from the cache as
soon as its fragment is durable there (ops/checkout.py ``_Early``, fed by
``PullFetcher``). What must still hold: every byte verified before it reaches the cache
or the work tree, no half-written file under a final name (also after kill -9), nothing
of the user's replaced, and a rerun completes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from gitquilt.errors import DirtyWorkTree
from gitquilt.ops import checkout as checkout_mod
from gitquilt.ops import transfer
from gitquilt.ops.checkout import checkout
from gitquilt.ops.transfer import PackSettings, PullFetcher, TransferFailed, push_tops
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import fragment_key
from gitquilt.remotes.local import DirectoryRemote
from tests.conftest import Repo
from tests.faults.helpers import kill9, read_tree, spawn, wait_until, write_tree
from tests.remotes.helpers import FAST, add_package, tmp_leftovers

KiB = 1 << 10


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def big(tag: str, n: int = 96 * KiB) -> bytes:
    return (tag.encode() * (n // len(tag) + 1))[:n]


DATA = {"a.bin": big("alpha-"), "sub/b.bin": big("bravo--"), "c.bin": big("charlie"), "small.txt": b"tiny\n"}


@pytest.fixture
def small_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of 64 KiB and more count as large (written early; a batch of their own)."""
    monkeypatch.setattr(checkout_mod, "EARLY_MIN", 64 * KiB)
    monkeypatch.setattr(transfer, "OWN_BATCH_MIN", 64 * KiB)


class Watching:
    """A remote that runs ``before_get(key)`` before each download."""

    def __init__(self, inner: Any, before_get: Callable[[str], None]) -> None:
        self.inner = inner
        self.before_get = before_get

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        self.before_get(key)
        return self.inner.get(key, start, length)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _setup(make_repo: Callable[..., Repo], tmp_path: Path) -> tuple[str, Repo, Path]:
    """A pushed package in ``src``, a clone of it with an empty cache; returns (top, clone, remote dir)."""
    src = make_repo("src")
    ws, top = add_package(src, DATA)
    remote_dir = tmp_path / "remote"
    # small.txt goes in a pack, the large files loose (as above the real pack threshold)
    push_tops(ws, [top], backend=DirectoryRemote(remote_dir), policy=FAST, packing=PackSettings(threshold=64 * KiB))
    src.git("add", "-A")
    src.git("commit", "-qm", "data")
    dest = tmp_path / "clone"
    src.git("clone", "-q", str(src.root), str(dest))
    return top, Repo(dest, src.env), remote_dir


def _pull(clone: Repo, top: str, backend: Any, force: bool = False) -> list[checkout_mod.CheckoutResult]:
    ws = Workspace.open(clone.root)
    fetcher = PullFetcher([top], jobs=1, policy=FAST, backend=backend)
    return checkout(ws, [ws.package_ref(str(clone.root / "data"))], force=force, fetcher=fetcher)


def test_large_files_land_in_the_work_tree_while_the_others_download(
    make_repo: Callable[..., Repo], tmp_path: Path, small_early: None,
) -> None:
    top, clone, remote_dir = _setup(make_repo, tmp_path)
    data = clone.root / "data"
    seen: dict[str, list[str]] = {}

    def before_get(key: str) -> None:  # one download at a time (jobs=1): what is in the work tree now?
        present = [k for k, v in DATA.items() if (data / k).is_file() and (data / k).read_bytes() == v]
        partial = [k for k, v in DATA.items() if (data / k).is_file() and (data / k).read_bytes() != v]
        assert not partial, f"half-written files under their final names: {partial}"
        seen[key] = present

    (result,) = _pull(clone, top, Watching(DirectoryRemote(remote_dir), before_get))
    assert read_tree(data) == DATA
    assert result.written == len(DATA)
    large = [fragment_key(sha(v)) for k, v in DATA.items() if len(v) >= 64 * KiB]
    last = max(large, key=list(seen).index)
    assert len(seen[last]) == 2, "the first two large files were written before the last one downloaded"
    assert tmp_leftovers(clone.root) == []
    ws = Workspace.open(clone.root)
    known = ws.statcache.lookup_dir(str(data))
    assert {os.path.relpath(p, data) for p in known} <= set(DATA), "stat cache rows name the files written"


def test_damaged_fragment_never_reaches_the_work_tree_and_the_rerun_completes(
    make_repo: Callable[..., Repo], tmp_path: Path, small_early: None,
) -> None:
    top, clone, remote_dir = _setup(make_repo, tmp_path)
    victim = remote_dir / fragment_key(sha(DATA["sub/b.bin"]))
    good = victim.read_bytes()
    victim.write_bytes(good[:-1] + b"X")  # same size, wrong bytes
    with pytest.raises(TransferFailed) as err:
        _pull(clone, top, DirectoryRemote(remote_dir))
    assert [k for k, _ in err.value.failures] == [victim.relative_to(remote_dir).as_posix()]
    data = clone.root / "data"
    assert not (data / "sub" / "b.bin").exists(), "no file from unverified bytes"
    for k in ("a.bin", "c.bin"):  # the others, written early, are whole
        assert (data / k).read_bytes() == DATA[k]
    assert tmp_leftovers(clone.root) == []
    ws = Workspace.open(clone.root)
    assert not ws.cache.has(sha(DATA["sub/b.bin"])), "nothing unverified in the cache"
    victim.write_bytes(good)
    (result,) = _pull(clone, top, DirectoryRemote(remote_dir))
    assert read_tree(data) == DATA
    assert result.unchanged == 2 and result.written == 2


def test_a_modified_file_is_refused_and_left_as_it_is(
    make_repo: Callable[..., Repo], tmp_path: Path, small_early: None,
) -> None:
    top, clone, remote_dir = _setup(make_repo, tmp_path)
    data = clone.root / "data"
    write_tree(data, {"a.bin": b"my own work"})  # in the way of a large file the plan would write
    with pytest.raises(DirtyWorkTree):
        _pull(clone, top, DirectoryRemote(remote_dir))
    assert read_tree(data) == {"a.bin": b"my own work"}, "nothing written: the checkout refused before writing"
    ws = Workspace.open(clone.root)
    assert ws.cache.missing(sha(v) for v in DATA.values()) == [], "pull still fetched"


def test_a_file_appearing_during_the_fetch_is_not_replaced(
    make_repo: Callable[..., Repo], tmp_path: Path, small_early: None,
) -> None:
    top, clone, remote_dir = _setup(make_repo, tmp_path)
    data = clone.root / "data"
    target = fragment_key(sha(DATA["c.bin"]))

    def before_get(key: str) -> None:
        if key == target:  # the user saves a file where c.bin goes, after checkout planned
            write_tree(data, {"c.bin": b"saved meanwhile"})

    with pytest.raises(DirtyWorkTree) as err:
        _pull(clone, top, Watching(DirectoryRemote(remote_dir), before_get))
    assert "c.bin" in str(err.value)
    assert (data / "c.bin").read_bytes() == b"saved meanwhile"


def test_kill9_during_an_overlapped_pull_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str,
                                                    bucket: str) -> None:
    """The real executable, S3 (moto), one download at a time, files above the real threshold:
    killed once the first large file is in the work tree. Every file under its final name is
    whole and right; the rerun completes."""
    size = checkout_mod.EARLY_MIN + 1024
    content = {f"m{i}.bin": hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1) for i in range(3)}
    content = {k: v[:size] for k, v in content.items()}
    src = make_repo("src")
    src.quilt("remote", "add", "origin", f"s3://{bucket}/q", "--endpoint-url", moto_url, "--region", "us-east-1",
              check=True)
    write_tree(src.root / "data", content)
    src.quilt("add", "data", check=True)
    src.git("commit", "-qm", "data")
    src.quilt("push", check=True)
    dest = tmp_path / "clone"
    src.git("clone", "-q", str(src.root), str(dest))
    clone = Repo(dest, src.env)
    data = dest / "data"
    proc = spawn(clone, "pull", "-j", "1")
    wait_until(lambda: data.is_dir() and any(p.is_file() for p in data.iterdir()), proc, "the first large file")
    kill9(proc)
    for p in data.iterdir():
        if p.name in content:
            assert p.read_bytes() == content[p.name], f"{p.name} is not whole under its final name"
    clone.quilt("pull", check=True)
    assert read_tree(data) == content
    assert tmp_leftovers(dest / "data") == []
