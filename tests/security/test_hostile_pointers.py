"""RELIABILITY.md §1 items 8–9: malformed and hostile pointer files.

Every case: one-line error naming the pointer file, non-zero exit, nothing written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitquilt.pointer import MAX_POINTER_BYTES, Pointer
from gitquilt.store import Store
from tests.conftest import Repo
from tests.security.hostile import World, cache_root, plant, snapshot

FILES = [("a.txt", b"a"), ("sub/b.txt", b"b")]


def _pointer_text(path: str = "pkg", top: str | None = None, fmt: int = 1) -> str:
    top = top or "0" * 64
    return f'format = {fmt}\npath = "{path}"\ntop_hash = "{top}"\nfiles = 2\nbytes = 2\n'


@pytest.fixture
def world(shared: World) -> Iterator[World]:
    root = shared.root
    shutil.rmtree(root / "pkg", ignore_errors=True)
    shutil.rmtree(root / "data", ignore_errors=True)
    for p in root.glob("*.quilt"):
        p.unlink()
    (root / "pkg").mkdir()
    (root / "pkg" / "mine.txt").write_bytes(b"user file")
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "precious").write_bytes(b"precious")
    yield shared


def _top(world: World) -> str:
    """A valid manifest in the cache, so that only the pointer is at fault."""
    top = plant(world.root, "pkg", FILES)
    (world.root / "pkg.quilt").unlink()
    return top


def _refused(world: World, pointer_file: str, data: bytes, *expected: str, package: str = "pkg") -> None:
    (world.root / pointer_file).parent.mkdir(parents=True, exist_ok=True)
    (world.root / pointer_file).write_bytes(data)
    before = snapshot(world.base)
    for args in (("checkout", package), ("checkout", "--force", package), ("status", "--check", package)):
        rc, out, err = world.quilt(*args)
        assert rc == 1, (args, out)
        text = (err if args[0] == "checkout" else out + err).strip()
        assert "Traceback" not in text
        if args[0] == "checkout":
            assert len(text.splitlines()) == 1, text
        assert pointer_file in text, text
        for e in expected:
            assert e in text, text
        assert snapshot(world.base) == before, f"{args} wrote something"


def _pad(text: str, size: int) -> bytes:
    data = text.encode()
    return data + b"#" * (size - len(data) - 1) + b"\n"


def test_cap_is_accepted_cap_plus_one_refused(world: World) -> None:
    top = _top(world)
    (world.root / "pkg" / "mine.txt").unlink()  # checkout would (rightly) refuse to delete it
    (world.root / "pkg.quilt").write_bytes(_pad(_pointer_text(top=top), MAX_POINTER_BYTES))
    rc, out, err = world.quilt("checkout", "pkg")
    assert rc == 0, err
    assert (world.root / "pkg" / "sub" / "b.txt").read_bytes() == b"b"
    shutil.rmtree(world.root / "pkg")
    (world.root / "pkg").mkdir()
    _refused(world, "pkg.quilt", _pad(_pointer_text(top=top), MAX_POINTER_BYTES + 1), f"larger than {MAX_POINTER_BYTES}")


def test_oversized_pointer_is_not_read_whole(world: World) -> None:
    _refused(world, "pkg.quilt", _pointer_text(top=_top(world)).encode() + b"#" * (4 << 20) + b"\n", "larger than")


def test_keys_out_of_order(world: World) -> None:
    top = _top(world)
    text = f'format = 1\ntop_hash = "{top}"\npath = "pkg"\nfiles = 2\nbytes = 2\n'
    _refused(world, "pkg.quilt", text.encode(), "expected the fields format, path, top_hash, files, bytes")


@pytest.mark.parametrize("fmt", [2, 1000])
def test_newer_format_says_upgrade(world: World, fmt: int) -> None:
    _refused(world, "pkg.quilt", _pointer_text(top=_top(world), fmt=fmt).encode(), "upgrade gitquilt")


@pytest.mark.parametrize("top", ["A" * 64, "0" * 63, "g" * 64, "../../etc/passwd"])
def test_invalid_top_hash(world: World, top: str) -> None:
    _refused(world, "pkg.quilt", _pointer_text(top=top).encode(), "'top_hash'")


@pytest.mark.parametrize("data", [b"\xff\xfeformat = 1\n", _pointer_text().encode("utf-16")])
def test_non_utf8(world: World, data: bytes) -> None:
    _refused(world, "pkg.quilt", data, "not UTF-8")


@pytest.mark.parametrize(
    "data",
    [b'[tool.poetry]\nname = "x"\n', b"version https://git-lfs.github.com/spec/v1\n", b"", b"format = 1\n"],
    ids=["toml", "git-lfs", "empty", "format-only"],
)
def test_valid_or_invalid_toml_that_is_not_a_pointer(world: World, data: bytes) -> None:
    _refused(world, "pkg.quilt", data, "pointer")


@pytest.mark.parametrize("path", ["other", "../x", "../outside", "sub/pkg", "/tmp/pkg", ".git", "PKG"])
def test_path_disagreeing_with_location_or_escaping(world: World, path: str) -> None:
    _refused(world, "pkg.quilt", _pointer_text(path=path, top=_top(world)).encode(), "pkg.quilt")


def test_path_is_relative_to_the_pointer_directory(world: World) -> None:
    top = _top(world)
    _refused(world, "data/pkg.quilt", _pointer_text(path="data/pkg", top=top).encode(), "does not match",
             package="data/pkg")
    _refused(world, "data/pkg.quilt", _pointer_text(path="../pkg", top=top).encode(), "does not match",
             package="data/pkg")
    (world.root / "data" / "pkg.quilt").write_bytes(Pointer("pkg", top, 2, 2).to_bytes())
    rc, _, err = world.quilt("checkout", "data/pkg")
    assert rc == 0, err
    assert (world.root / "data" / "pkg" / "a.txt").read_bytes() == b"a"
    assert not (world.root / "pkg" / "a.txt").exists()


def test_hostile_pointer_through_the_executable(repo: Repo) -> None:
    top = plant(repo.root, "pkg", FILES)
    repo.write("pkg.quilt", _pointer_text(path="../x", top=top))
    before = snapshot(repo.root.parent)
    r = repo.quilt("checkout", "pkg")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "error: pkg.quilt: pointer path '../x' does not match its location (expected 'pkg')"
    )
    assert snapshot(repo.root.parent) == before


def test_hostile_pointer_at_a_revision(repo: Repo) -> None:
    """`checkout --rev` reads the pointer from git's object store: the same checks apply."""
    top = plant(repo.root, "pkg", FILES)
    repo.write("pkg.quilt", _pointer_text(path="../x", top=top))
    repo.git("add", "pkg.quilt")
    repo.git("commit", "-qm", "hostile pointer")
    Path(repo.root / "pkg.quilt").write_bytes(Pointer("pkg", top, 2, 2).to_bytes())  # the work tree is fine
    before = snapshot(repo.root.parent)
    r = repo.quilt("checkout", "--rev", "HEAD", "pkg")
    assert r.returncode == 1
    assert "pkg.quilt@HEAD: pointer path '../x'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert snapshot(repo.root.parent) == before
    assert Store(cache_root(repo.root)).has_manifest(top)
