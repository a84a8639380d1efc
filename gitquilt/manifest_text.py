"""Manifests read back from their canonical text, without pyarrow.

The cache keeps, beside ``manifests/<top>.parquet``, a derived copy of the manifest's
canonical text v1 (docs/FORMAT.md, "Cache-only files"): ``manifests/<top>.txt``. The
text is self-verifying — its SHA-256 *is* the top hash — so a reader needs no trust in
the file: :func:`parse_canonical_text` rebuilds the manifest through the same validation
as any untrusted input (:meth:`Manifest.from_entries`) and then requires the rebuilt
manifest's top hash to equal the expected one, which also proves the text canonical.

Why: importing pyarrow and numpy costs 0.15–0.3 s, more than the rest of a no-op
``checkout`` or ``status``; parsing the text of a 10,000-entry manifest takes ~30 ms.
"""

from __future__ import annotations

import json
import re

from gitquilt.errors import FormatError, IntegrityError, QuiltError
from gitquilt.manifest import EMPTY_META, HEADER, Entry, Manifest, check_canonical_json

SUFFIX = ".txt"
# Above this many entries the Parquet reader (vectorised) is faster than parsing text.
MAX_TEXT_ENTRIES = 200_000
_CANONICAL_SIZE = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)


def parse_canonical_text(data: bytes, expected_top_hash: str, where: str = "manifest text") -> Manifest:
    """Decode canonical text v1 into a validated manifest named ``expected_top_hash``.

    Raises :class:`FormatError` for text that does not parse, the usual key errors
    (:class:`~gitquilt.errors.UnsafePath`) for hostile keys, and :class:`IntegrityError`
    when the content is not exactly the canonical text of ``expected_top_hash``.
    """
    where = f"{where} {expected_top_hash[:12]}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: not UTF-8") from None
    header = HEADER.decode()
    if not text.startswith(header) or not text.endswith("\n"):
        raise FormatError(f"{where}: not canonical manifest text v1")
    lines = text[len(header) : -1].split("\n")
    meta_tag, _, meta_text = lines[0].partition("\t")
    if meta_tag != "meta":
        raise FormatError(f"{where}: missing the meta line")
    check_canonical_json(meta_text, f"{where}: package metadata")
    meta = json.loads(meta_text)
    rows = [line.split("\t") for line in lines[1:]]
    if rows and set(map(len, rows)) != {5}:
        raise FormatError(f"{where}: a line without exactly five tab-separated fields")
    # the fields whose parsing could accept a non-canonical spelling of the same value
    # ("," read as "not executable", "+1", "01" or "1_0" as numbers) must be canonical:
    # the rebuilt top hash would not notice, since the entries come out the same
    if any(execute not in ("x", "-") for _k, _s, _n, execute, _m in rows):
        raise FormatError(f"{where}: an executable flag that is neither 'x' nor '-'")
    if any(not _CANONICAL_SIZE.fullmatch(size) for _k, _s, size, _x, _m in rows):
        raise FormatError(f"{where}: a size that is not a canonical decimal number")
    entries = [
        Entry(key, sha, int(size), execute == "x", EMPTY_META if entry_meta == EMPTY_META else entry_meta)
        for key, sha, size, execute, entry_meta in rows
    ]
    manifest = Manifest.from_entries(entries, meta)
    if manifest.top_hash != expected_top_hash:
        raise IntegrityError(f"{where}: content hashes to {manifest.top_hash}, not to its name: refusing it")
    return manifest


def try_parse_canonical_text(data: bytes, expected_top_hash: str) -> Manifest | None:
    """:func:`parse_canonical_text`, or None when the text is not usable for any reason."""
    try:
        return parse_canonical_text(data, expected_top_hash)
    except QuiltError:
        return None
