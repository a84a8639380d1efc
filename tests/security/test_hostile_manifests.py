"""RELIABILITY.md §1 items 1–7: hostile manifests are refused before anything is written.

Each manifest is built with pyarrow directly (tests/security/hostile.py), so that it hashes
correctly to its own name, and put straight into the cache; a pointer names it. Then the
real `git quilt checkout` must exit non-zero with one line naming the key and manifest,
and leave every file — the work tree, .git/hooks, the directory outside the repository,
the files of valid keys — exactly as it was.

The long parametrised lists run the CLI in-process (``gitquilt.cli.main.run``, the same
code the executable runs) in one shared repository, to keep the suite fast; the
representative cases run the real executable in a fresh repository.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from gitquilt.errors import IntegrityError
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes
from gitquilt.store import Store
from tests.conftest import Repo
from tests.security.hostile import World, cache_root, hostile_manifest, parquet_bytes, plant, row, sha, snapshot

VALID = [("a-valid.txt", b"valid bytes"), ("sub/b-valid.txt", b"more valid bytes")]


def _prepare(root: Path) -> None:
    """The package directory as a user left it: one file of the package in an older version
    (its bytes are in the cache, so checkout may replace it) and one more file."""
    shutil.rmtree(root / "pkg", ignore_errors=True)
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "sub" / "b-valid.txt").write_bytes(b"old version")
    (root / "pkg" / "untouched.txt").write_bytes(b"user file")
    store = Store(cache_root(root)).ensure()
    store.put_bytes(b"old version")
    store.put_bytes(b"user file")
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "precious").write_bytes(b"precious")


@pytest.fixture
def base(repo: Repo) -> Path:
    """A fresh repository (for the real executable) with an `outside` directory next to it."""
    _prepare(repo.root)
    return repo.root.parent


@pytest.fixture
def world(shared: World) -> Iterator[World]:
    _prepare(shared.root)
    yield shared


def _refused_inproc(world: World, *names: str) -> str:
    before = snapshot(world.base)
    rc, out, err = world.quilt("checkout", "pkg")
    assert rc == 1, out
    err = err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    for name in names:
        assert name in err, err
    assert snapshot(world.base) == before, "checkout wrote something"
    return err


def _refused(repo: Repo, base: Path, before: dict[str, object], *names: str) -> str:
    r = repo.quilt("checkout", "pkg")
    assert r.returncode == 1, r.stdout
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for name in names:
        assert name in err, err
    assert snapshot(base) == before, "checkout wrote something"
    return err


def _hostile_files(key: str) -> list[tuple[str, bytes]]:
    files = VALID + [(key, b"#!/bin/sh\necho pwned > /tmp/pwned\n")]
    return sorted(files, key=lambda f: f[0].encode("utf-8", "surrogatepass"))


def _check_key_refused(world: World, key: str) -> None:
    top = plant(world.root, "pkg", _hostile_files(key))
    _refused_inproc(world, repr(key), top[:12])


# §1.1
def test_parent_escape_to_git_hooks(repo: Repo, base: Path) -> None:
    """Through the real executable."""
    key = "../../.git/hooks/pre-commit"
    top = plant(repo.root, "pkg", _hostile_files(key))
    before = snapshot(base)
    _refused(repo, base, before, repr(key), top[:12])
    assert not (repo.root / ".git" / "hooks" / "pre-commit").exists()


def test_parent_escape_in_process(world: World) -> None:
    _check_key_refused(world, "../../.git/hooks/pre-commit")
    _check_key_refused(world, "../../outside/precious")


# §1.2
@pytest.mark.parametrize(
    "key",
    ["/etc/x", "C:x", "a\\..\\b", "a//b", ".", "./a", "a/./b", "a/", "a\x00b", "a\x01b", "a\nb", "a\rb", "x/../../y"],
)
def test_malformed_keys(world: World, key: str) -> None:
    _check_key_refused(world, key)


# §1.3
@pytest.mark.parametrize(
    "key",
    [".GIT/hooks/pre-commit", ".g\u200cit/hooks/pre-commit", "git~1/hooks/pre-commit", ".git./hooks/pre-commit",
     ".git /hooks/pre-commit", ".git::$INDEX_ALLOCATION/hooks/pre-commit", ".git/hooks/pre-commit",
     "sub/.Git/config", "\ufeff.git/config"],
)
def test_git_lookalike_segments(world: World, key: str) -> None:
    _check_key_refused(world, key)


# §1.4
def test_nfc_duplicate_refused(world: World) -> None:
    files = [("caf\u00e9.txt", b"nfc"), ("cafe\u0301.txt", b"nfd")]
    top = plant(world.root, "pkg", sorted(files, key=lambda f: f[0].encode()))
    _refused_inproc(world, "NFC", repr("cafe\u0301.txt"), top[:12])


def test_case_collision_reported_before_writing_and_both_kept(repo: Repo, base: Path) -> None:
    """On a case-sensitive file system both files are written; the collision is reported first."""
    plant(repo.root, "pkg", [("A.jpg", b"upper"), ("a.jpg", b"lower")] + [VALID[1]])
    r = repo.quilt("checkout", "pkg")
    assert r.returncode == 0, r.stderr
    assert "A.jpg / a.jpg" in r.stderr and "differ only by case" in r.stderr
    assert (repo.root / "pkg/A.jpg").read_bytes() == b"upper"
    assert (repo.root / "pkg/a.jpg").read_bytes() == b"lower"


def test_case_collision_refused_where_case_is_ignored(repo: Repo, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system ignores case (macOS, Windows), one file would overwrite the other: refuse."""
    from gitquilt.errors import UnsafePath
    from gitquilt.ops import checkout as checkout_mod
    from gitquilt.ops.workspace import Workspace

    plant(repo.root, "pkg", [("A.jpg", b"upper"), ("a.jpg", b"lower")])
    before = snapshot(base)
    monkeypatch.setattr(checkout_mod, "_case_insensitive", lambda root: True)
    ws = Workspace.open(repo.root)
    try:
        with pytest.raises(UnsafePath, match="would overwrite each other: A.jpg / a.jpg"):
            checkout_mod.checkout(ws, [ws.package_ref(str(repo.root / "pkg"))])
    finally:
        ws.close()
    assert snapshot(base) == before


# §1.5
def test_duplicate_key_refused(world: World) -> None:
    top = plant(world.root, "pkg", [VALID[0], ("dup.txt", b"one"), ("dup.txt", b"two")])
    _refused_inproc(world, "duplicate logical key 'dup.txt'", top[:12])


def test_file_and_directory_with_one_name_refused(world: World) -> None:
    top = plant(world.root, "pkg", [("a", b"file"), ("a/b", b"nested")])
    _refused_inproc(world, "'a' is both a file and a directory", top[:12])


# §1.6
def test_manifest_not_hashing_to_its_name_refused(world: World) -> None:
    good = Manifest.from_entries([Entry(k, sha(d), len(d)) for k, d in VALID])
    wrong = sha(b"another name")
    plant(world.root, "pkg", VALID, parquet=manifest_to_bytes(good), top=wrong)
    _refused_inproc(world, wrong, "refusing")


def test_manifest_from_a_remote_under_a_wrong_name_is_not_cached(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    good = Manifest.from_entries([Entry(k, sha(d), len(d)) for k, d in VALID])
    wrong = sha(b"another name")
    with pytest.raises(IntegrityError) as exc:
        store.put_manifest_bytes(manifest_to_bytes(good), wrong, where="manifest from remote origin")
    assert "remote origin" in str(exc.value) and wrong[:12] in str(exc.value)
    assert not store.has_manifest(wrong) and not store.has_manifest(good.top_hash)
    assert list(store.manifests.iterdir()) == []


# §1.7
def _cols(**override: object) -> dict[str, object]:
    rows = [row(k, d) for k, d in VALID]
    cols: dict[str, object] = {
        "logical_key": pa.array([r[0] for r in rows]),
        "sha256": pa.array([r[1] for r in rows]),
        "size": pa.array([r[2] for r in rows], pa.int64()),
        "executable": pa.array([r[3] for r in rows]),
        "meta": pa.array([r[4] for r in rows]),
    }
    cols.update(override)
    return {k: v for k, v in cols.items() if v is not None}


_GOOD_PARQUET, _GOOD_TOP = hostile_manifest([row(k, d) for k, d in VALID])
_META = {b"gitquilt.meta": b"{}"}


@pytest.mark.parametrize(
    "parquet, expected",
    [
        (_GOOD_PARQUET[: len(_GOOD_PARQUET) // 2], "Parquet manifest"),
        (_GOOD_PARQUET[:-10], "Parquet manifest"),
        (parquet_bytes(_cols(size=None), _META), "missing column 'size'"),
        (parquet_bytes(_cols(size=pa.array(["11", "16"])), _META), "column 'size' has type string"),
        (parquet_bytes(_cols(size=pa.array([-1, 16], pa.int64())), _META), "negative size"),
        (parquet_bytes(_cols(sha256=pa.array([sha(b"x").upper(), sha(b"y")])), _META), "64 lowercase hex"),
        (parquet_bytes(_cols(sha256=pa.array(["abc", sha(b"y")])), _META), "64 lowercase hex"),
        (parquet_bytes(_cols(extra=pa.array([1, 2])), {**_META, b"gitquilt.required": b"extra"}), "upgrade gitquilt"),
        (parquet_bytes(_cols(), {}), "missing package metadata"),
    ],
    ids=["truncated-half", "truncated-footer", "missing-column", "size-as-string", "negative-size", "upper-hash",
         "short-hash", "unknown-required", "no-meta"],
)
def test_damaged_or_wrong_schema_refused(world: World, parquet: bytes, expected: str) -> None:
    top = plant(world.root, "pkg", VALID, parquet=parquet, top=_GOOD_TOP)
    _refused_inproc(world, expected, top[:12])


def test_truncated_manifest_through_the_executable(repo: Repo, base: Path) -> None:
    top = plant(repo.root, "pkg", VALID, parquet=_GOOD_PARQUET[:-10], top=_GOOD_TOP)
    before = snapshot(base)
    _refused(repo, base, before, "Parquet manifest", top[:12])


def test_status_of_a_hostile_manifest_is_a_one_line_error(repo: Repo, base: Path) -> None:
    """Not only checkout: every command that loads the manifest refuses it the same way."""
    files = [("../../escape", b"x")]
    plant(repo.root, "pkg", files)
    before = snapshot(base)
    r = repo.quilt("status", "--check", "pkg")
    assert r.returncode == 1
    assert "'../../escape'" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    assert snapshot(base) == before
