"""gitquilt.keys: logical-key rules (docs/FORMAT.md "Logical keys")."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gitquilt.errors import UnsafePath
from gitquilt.keys import (
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    case_collisions,
    check_key,
    check_sorted_unique,
    is_git_lookalike,
)

VALID = [
    "a",
    "a.jpg",
    "dir/sub/file.txt",
    "with space/and  two",
    "café/naïve.txt",
    "emoji 😀/🐍.py",
    "日本語/ファイル",
    ".hidden",
    "..dots",
    "a..b",
    "...",
    ".gitignore",
    ".gitattributes",
    "git",
    "gitx/.github/workflows/ci.yml",
    "a/git~x",
    "ab:c",  # ":" is fine on POSIX when not a drive letter
    "d/a:b",
    "x" * MAX_SEGMENT_BYTES,
    "/".join(["d" * 200] * 20),  # 4019 bytes
]

INVALID = {
    "": "empty",
    "/etc/x": "absolute",
    "C:x": "drive letter",
    "c:/x": "drive letter",
    "a\\..\\b": "backslash",
    "a//b": "empty path segment",
    "a/": "empty path segment",
    "./a": "'.' segment",
    "a/.": "'.' segment",
    "a/../b": "'..' segment",
    "../../.git/hooks/pre-commit": "'..' segment",
    "..": "'..' segment",
    "a\x00b": "control character",
    "a\nb": "control character",
    "a\tb": "control character",
    "a\rb": "control character",
    "a\x7fb": "control character",
    "a\x85b": "control character",
    ".git": "names a .git directory",
    ".git/config": "names a .git directory",
    "a/.git/hooks/x": "names a .git directory",
    ".GIT/x": "names a .git directory",
    ".Git": "names a .git directory",
    ".g\u200cit": "names a .git directory",
    ".gi\u200dt/x": "names a .git directory",
    "\ufeff.git": "names a .git directory",
    ".git\u206a": "names a .git directory",
    "git~1": "names a .git directory",
    "GIT~12/x": "names a .git directory",
    ".git.": "names a .git directory",
    ".git ": "names a .git directory",
    ".git . .": "names a .git directory",
    ".git::$INDEX_ALLOCATION": "names a .git directory",
    ".git:stream/x": "names a .git directory",
    "e\u0301": "NFC",
    "caf\u0065\u0301.txt": "NFC",
    "a\ud800b": "not valid Unicode",
    "x" * (MAX_SEGMENT_BYTES + 1): "segment longer",
    "é" * 128: "segment longer",  # 256 bytes of UTF-8 in 128 characters
    "/".join(["d" * 200] * 21): "longer than",
}


@pytest.mark.parametrize("key", VALID)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("key, reason", INVALID.items(), ids=[repr(k)[:40] for k in INVALID])
def test_invalid_keys(key: str, reason: str) -> None:
    with pytest.raises(UnsafePath, match=re.escape(reason)) as exc:
        check_key(key)
    assert "\n" not in str(exc.value)  # one line, even for a key holding a newline


@pytest.mark.parametrize("value", [None, 1, b"a", ["a"]])
def test_non_string_key(value: object) -> None:
    with pytest.raises(UnsafePath, match="not a string"):
        check_key(value)


def test_long_key_error_is_shortened() -> None:
    with pytest.raises(UnsafePath) as exc:
        check_key("\x00" * 10_000)
    assert len(str(exc.value)) < 300


@pytest.mark.parametrize(
    "segment, expected",
    [(".git", True), (".GiT", True), ("git~1", True), ("git~", False), ("git~1a", False),
     (".git..", True), (".git\u200e", True), (".gitx", False), ("x.git", False), ("git", False)],
)
def test_git_lookalike(segment: str, expected: bool) -> None:
    assert is_git_lookalike(segment) is expected


def test_sorted_unique() -> None:
    check_sorted_unique([])
    check_sorted_unique(["A", "B", "a", "b/c", "é", "😀"])
    with pytest.raises(UnsafePath, match="duplicate logical key 'a'"):
        check_sorted_unique(["a", "a"])
    with pytest.raises(UnsafePath, match="out of order"):
        check_sorted_unique(["b", "a"])
    # UTF-8 byte order, not UTF-16 order: U+FF61 (EF BD A1) sorts before U+1F600 (F0 9F 98 80)
    check_sorted_unique(["\uff61", "😀"])
    with pytest.raises(UnsafePath):
        check_sorted_unique(["😀", "\uff61"])


def test_case_collisions() -> None:
    assert case_collisions(["A.jpg", "a.jpg", "b", "Dir/x", "dir/x", "c"]) == [["A.jpg", "a.jpg"], ["Dir/x", "dir/x"]]
    assert case_collisions(["a", "b"]) == []


# -- an independent reading of the rules, compared with check_key on random input -------------

_IGNORED = set(range(0x200C, 0x2010)) | set(range(0x202A, 0x202F)) | set(range(0x206A, 0x2070)) | {0xFEFF}


def _reference_ok(key: str) -> bool:
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if not key or len(raw) > MAX_KEY_BYTES or unicodedata.normalize("NFC", key) != key:
        return False
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key) or "\\" in key:
        return False
    if key.startswith("/") or re.match(r"[A-Za-z]:", key):
        return False
    for seg in key.split("/"):
        if seg in ("", ".", "..") or len(seg.encode()) > MAX_SEGMENT_BYTES:
            return False
        s = "".join(c for c in seg if ord(c) not in _IGNORED).casefold().split(":")[0].rstrip(". ")
        if s == ".git" or re.fullmatch(r"git~[0-9]+", s):
            return False
    return True


_tricky = st.sampled_from(
    ["/", ".", "..", ".git", "GIT", "git~1", ":", "\\", "\x00", "\n", " ", "\u200c", "e\u0301", "é", "😀", "C:", "~"]
)
_keys = st.lists(st.one_of(_tricky, st.text(max_size=6)), max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(_keys)
@example("a/.git")
@example("Git~9")
@example("aGIT/b")
def test_check_key_agrees_with_reference(key: str) -> None:
    try:
        check_key(key)
        accepted = True
    except UnsafePath:
        accepted = False
    assert accepted is _reference_ok(key), key


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40))
def test_ascii_fast_path_agrees_with_reference(key: str) -> None:
    """Printable ASCII keys go through a single regex; it must never accept what the rules refuse."""
    try:
        check_key(key)
        accepted = True
    except UnsafePath:
        accepted = False
    assert accepted is _reference_ok(key), key
