"""Logical keys: validation and normalisation.

A logical key is a file's path relative to its package directory. Keys come from
manifests that may be hostile (a remote, a crafted commit), so every key is checked
before anything is written: see DESIGN.md "Logical keys" and RELIABILITY.md §1.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from gitquilt.errors import UnsafePath

#: Longest key accepted (bytes of UTF-8). Linux PATH_MAX is 4096.
MAX_KEY_BYTES = 4096
MAX_SEGMENT_BYTES = 255

# Code points that HFS+ ignores when comparing names; git refuses ".git" spelled with them.
_IGNORABLE = dict.fromkeys(
    [0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E]
    + list(range(0x206A, 0x2070))
    + [0xFEFF]
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHORT_GIT = re.compile(r"^git~\d+$")
# Plain printable-ASCII keys without ':', "git", '\\', empty, '.' or '..' segments, and
# short enough for the segment limit: the common case, accepted by one regex match.
_PLAIN_KEY = re.compile(r"(?!/)(?!.*//)(?!.*(?:^|/)\.\.?(?:/|$))(?!.*[gG][iI][tT])[\x20-\x39\x3b-\x5b\x5d-\x7e]{1,255}(?<!/)")


def _is_control(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or 0x7F <= o <= 0x9F


def is_git_lookalike(segment: str) -> bool:
    """True when a path segment could name the ``.git`` directory on some file system.

    Covers case folding (``.GIT``), HFS+ ignorable code points (``.g\\u200cit``), NTFS
    short names (``git~1``), Windows trailing dots and spaces (``.git.``, ``.git ``) and
    NTFS alternate data streams (``.git::$INDEX_ALLOCATION``).
    """
    s = segment.translate(_IGNORABLE).casefold()
    s = s.split(":", 1)[0]
    s = s.rstrip(". ")
    return s == ".git" or _SHORT_GIT.match(s) is not None


def check_key(key: object) -> str:
    """Return ``key`` if it is a safe logical key, else raise :class:`UnsafePath`."""
    if not isinstance(key, str):
        raise UnsafePath(f"invalid logical key {key!r}: not a string")
    if _PLAIN_KEY.fullmatch(key):
        return key
    shown = repr(key)[:200]
    if not key:
        raise UnsafePath("invalid logical key '': empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafePath(f"invalid logical key {shown}: longer than {MAX_KEY_BYTES} bytes")
    if any(_is_control(c) for c in key):
        raise UnsafePath(f"invalid logical key {shown}: control character")
    if "\\" in key:
        raise UnsafePath(f"invalid logical key {shown}: backslash")
    if key.startswith("/"):
        raise UnsafePath(f"invalid logical key {shown}: absolute path")
    if _DRIVE.match(key):
        raise UnsafePath(f"invalid logical key {shown}: drive letter")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePath(f"invalid logical key {shown}: not valid Unicode") from None
    if not key.isascii() and unicodedata.normalize("NFC", key) != key:
        raise UnsafePath(f"invalid logical key {shown}: not in Unicode NFC form")
    for segment in key.split("/"):
        if segment == "":
            raise UnsafePath(f"invalid logical key {shown}: empty path segment")
        if segment in (".", ".."):
            raise UnsafePath(f"invalid logical key {shown}: '{segment}' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise UnsafePath(f"invalid logical key {shown}: segment longer than {MAX_SEGMENT_BYTES} bytes")
        if is_git_lookalike(segment):
            raise UnsafePath(f"invalid logical key {shown}: names a .git directory")
    return key


def key_sort_token(key: str) -> bytes:
    """Sort token: keys are ordered by their UTF-8 bytes."""
    return key.encode("utf-8")


def check_sorted_unique(keys: Iterable[str]) -> None:
    """Raise when keys are not strictly increasing by UTF-8 bytes (duplicates included)."""
    prev: bytes | None = None
    prev_key = ""
    for key in keys:
        tok = key.encode("utf-8")
        if prev is not None and tok <= prev:
            if tok == prev:
                raise UnsafePath(f"duplicate logical key {key!r}: the manifest is corrupt")
            raise UnsafePath(f"logical keys out of order ({prev_key!r} before {key!r}): the manifest is corrupt")
        prev, prev_key = tok, key


def parent_dirs(keys: Iterable[str]) -> set[str]:
    """Every directory that holds one of ``keys`` (``a/b/c`` → ``a``, ``a/b``)."""
    out: set[str] = set()
    for key in keys:
        idx = key.rfind("/")
        while idx > 0:
            parent = key[:idx]
            if parent in out:
                break
            out.add(parent)
            idx = parent.rfind("/")
    return out


def case_collisions(keys: Iterable[str]) -> list[list[str]]:
    """Groups of keys equal ignoring case (they collide on macOS and Windows)."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.casefold(), []).append(key)
    return [g for g in groups.values() if len(g) > 1]
