"""Odd but valid inputs round-trip: add → rm -rf → checkout → status clean (RELIABILITY.md §59)."""

from __future__ import annotations

import hashlib
import shutil
import unicodedata

from tests.conftest import Repo
from tests.faults.helpers import cache_root, read_tree, store_objects, temp_files, write_tree

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _roundtrip(repo: Repo, pkg: str, files: dict[str, bytes]) -> None:
    write_tree(repo.root / pkg, files)
    (repo.root / pkg).mkdir(exist_ok=True)
    repo.quilt("add", pkg, check=True)
    repo.git("commit", "-qm", f"add {pkg}")
    assert repo.quilt("status", "--check", pkg).returncode == 0
    shutil.rmtree(repo.root / pkg)
    repo.quilt("checkout", pkg, check=True)
    assert read_tree(repo.root / pkg) == files
    assert temp_files(repo.root / pkg) == []
    r = repo.quilt("status", "--check", pkg)
    assert r.returncode == 0, r.stdout + r.stderr
    # re-adding the restored tree is a no-op: same pointer bytes
    before = (repo.root / f"{pkg}.quilt").read_bytes()
    repo.quilt("add", pkg, check=True)
    assert (repo.root / f"{pkg}.quilt").read_bytes() == before


def test_empty_files_and_the_zero_byte_fragment(repo: Repo) -> None:
    files = {"empty.txt": b"", "sub/also-empty": b"", "sub/deeper/zero.bin": b"", "nonempty": b"x"}
    _roundtrip(repo, "data", files)
    objects = store_objects(cache_root(repo))
    assert EMPTY_SHA256 in objects and objects[EMPTY_SHA256].stat().st_size == 0
    assert len(objects) == 2  # the empty fragment is stored once


def test_empty_package(repo: Repo) -> None:
    _roundtrip(repo, "nothing", {})
    assert (repo.root / "nothing").is_dir()
    assert b"files = 0" in repo.read("nothing.quilt")


def test_names_with_spaces_unicode_and_emoji(repo: Repo) -> None:
    def nfc(s: str) -> str:
        return unicodedata.normalize("NFC", s)

    files = {
        "with space.txt": b"1",
        " leading space": b"2",
        "dir with spaces/inner file.txt": b"3",
        nfc("ünïcödé/naïve café.txt"): b"4",
        "日本語/ファイル.txt": b"5",
        "📦/🎉 party.bin": b"6",
        "tab\u00a0nbsp and #hash [brackets] *star?.txt": b"7",
    }
    _roundtrip(repo, nfc("my data ☃"), files)
    assert nfc("/my data ☃/") in repo.read(".gitignore").decode()


def test_very_long_names_and_paths(repo: Repo) -> None:
    deep = "/".join(f"{i:02d}" + "d" * 198 for i in range(14))  # 14 levels of 200 bytes: ~2.8 KB path
    files = {
        "a" * 255: b"longest ASCII name",
        "📦" * 63: b"252 bytes of emoji in one name",  # temp names must stay within NAME_MAX
        "é" * 127: b"254 bytes of 2-byte characters",
        f"{deep}/leaf.txt": b"deep",
        f"{deep}/{'z' * 250}": b"deep and long",
    }
    _roundtrip(repo, "long", files)


def test_a_file_name_no_manifest_may_hold_is_refused_after_hashing(repo: Repo) -> None:
    """The manifest is built while the last fragments are committed; a name the manifest
    refuses (a backslash, a control character) is still one line, exit 2, and nothing
    names the package: no pointer, no manifest, nothing staged."""
    write_tree(repo.root / "data", {"ok.txt": b"fine\n", "a\\b": b"x", "sub/c\td": b"y"})
    r = repo.quilt("add", "data")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data: invalid logical key"), r.stderr
    assert "Traceback" not in r.stderr
    assert not (repo.root / "data.quilt").exists()
    assert not list((cache_root(repo) / "manifests").glob("*.parquet"))
    staged = repo.git("diff", "--cached", "--name-only").stdout.split()
    assert "data.quilt" not in staged and ".gitignore" not in staged
    assert read_tree(repo.root / "data") == {"ok.txt": b"fine\n", "a\\b": b"x", "sub/c\td": b"y"}
