"""gitquilt.digest: digest syntax, streaming hashes, hashing writers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from gitquilt import digest
from gitquilt.errors import FormatError, IntegrityError

ABC = hashlib.sha256(b"abc").hexdigest()


def test_empty_digest_constant() -> None:
    assert digest.EMPTY_SHA256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    "value",
    [ABC.upper(), ABC[:-1], ABC + "0", "sha256:" + ABC, " " + ABC[1:], ABC[:-1] + "g", None, 12, b"0" * 64, ""],
)
def test_invalid_digests(value: object) -> None:
    assert not digest.is_digest(value)
    with pytest.raises(FormatError, match="64 lowercase hex"):
        digest.check_digest(value, "top hash")


def test_valid_digest_and_message_names_what() -> None:
    assert digest.check_digest(ABC) == ABC
    with pytest.raises(FormatError, match="invalid hash of 'a.txt'"):
        digest.check_digest("x", "hash of 'a.txt'")


def test_newline_after_digest_is_refused() -> None:
    # re.match with "$" would accept a trailing newline; fullmatch must not
    assert not digest.is_digest(ABC + "\n")


def test_hash_bytes_and_stream() -> None:
    assert digest.hash_bytes(b"abc") == ABC
    assert digest.hash_bytes(memoryview(b"abc")) == ABC
    assert digest.hash_stream(io.BytesIO(b"abc")) == (ABC, 3)


def test_hash_stream_limit_stops_early() -> None:
    data = b"x" * (digest.BLOCK_SIZE + 10)
    h, n = digest.hash_stream(io.BytesIO(data), limit=digest.BLOCK_SIZE + 1)
    assert n == digest.BLOCK_SIZE + 1
    assert h == hashlib.sha256(data[: digest.BLOCK_SIZE + 1]).hexdigest()
    assert digest.hash_stream(io.BytesIO(data), limit=0) == (digest.EMPTY_SHA256, 0)


def test_hash_file_spanning_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (digest.BLOCK_SIZE // 256 * 2 + 3)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert digest.hash_file(p) == (hashlib.sha256(data).hexdigest(), len(data))
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert digest.hash_file(empty) == (digest.EMPTY_SHA256, 0)


def test_hashing_writer_counts_and_passes_through() -> None:
    raw = io.BytesIO()
    w = digest.HashingWriter(raw)
    assert w.write(b"ab") == 2
    w.write(memoryview(b"c"))
    assert (raw.getvalue(), w.size, w.hexdigest()) == (b"abc", 3, ABC)


def test_expect_digest() -> None:
    digest.expect_digest(ABC, ABC, 3, "x")
    with pytest.raises(IntegrityError) as exc:
        digest.expect_digest(digest.EMPTY_SHA256, ABC, 0, "fragment f")
    assert str(exc.value) == f"fragment f: expected sha256 {ABC}, got {digest.EMPTY_SHA256} after 0 bytes"
