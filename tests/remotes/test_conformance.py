"""Run the conformance suite against every backend: memory, directory and S3 (moto over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gitquilt.errors import IntegrityError
from gitquilt.remotes import Remote, fragment_key
from tests.remotes.conformance import Conformance, put_fragment, read, sha
from tests.remotes.conftest import RemoteFactory


class TestMemory(Conformance):
    @pytest.fixture
    def remote(self, make_remote: RemoteFactory) -> Remote:
        return make_remote("memory")


class TestDirectory(Conformance):
    @pytest.fixture
    def remote(self, make_remote: RemoteFactory) -> Remote:
        return make_remote("directory")


class TestS3(Conformance):
    @pytest.fixture
    def remote(self, make_remote: RemoteFactory) -> Remote:
        return make_remote("s3")


@pytest.mark.parametrize("kind", ["memory", "directory", "s3"])
def test_listing_pages_past_1000_keys(make_remote: RemoteFactory, kind: str) -> None:
    """S3 lists 1,000 keys a page: more must come back complete and in order (§41)."""
    remote = make_remote(kind)
    datas = [f"paged {i}".encode() for i in range(1050)]
    with ThreadPoolExecutor(16) as pool:
        keys = sorted(k for k, _ in pool.map(lambda d: put_fragment(remote, d), datas))
    remote.flush()
    before = remote.request_count()
    listed = [o.key for o in remote.list("objects/sha256/")]
    assert listed == keys
    if kind != "directory":
        assert remote.request_count() - before == 2, "two pages, no per-object requests"


# -- S3 only ---------------------------------------------------------------------------------
MiB = 1 << 20


def test_s3_multipart_roundtrip_and_parts(make_remote: RemoteFactory, s3_admin: Any, bucket: str) -> None:
    remote = make_remote("s3", prefix="mp", multipart_threshold="5MiB", multipart_chunksize="5MiB")
    data = os.urandom(11 * MiB + 123)
    key, created = put_fragment(remote, data)
    assert created
    assert read(remote, key) == data
    head = s3_admin.head_object(Bucket=bucket, Key=f"mp/{key}")
    assert head["ETag"].endswith('-3"'), "uploaded in three parts"
    assert remote.list_uploads() == []
    # put-if-absent holds for multipart too
    assert put_fragment(remote, data)[1] is False


def test_s3_multipart_with_wrong_hash_leaves_no_object_and_no_upload(make_remote: RemoteFactory) -> None:
    remote = make_remote("s3", multipart_threshold="5MiB", multipart_chunksize="5MiB")
    data = os.urandom(6 * MiB)
    key = fragment_key(sha(b"something else"))
    with pytest.raises(IntegrityError, match="expected sha256"):
        remote.put(key, io.BytesIO(data), len(data), sha(b"something else"))
    assert remote.size(key) is None
    assert remote.list_uploads() == [], "the failed multipart upload was aborted"


def test_s3_multipart_memory_is_bounded(make_remote: RemoteFactory) -> None:
    """In-flight part buffers never exceed the configured budget, whatever the file size."""
    remote = make_remote("s3", multipart_threshold="5MiB", multipart_chunksize="5MiB", memory="10MiB")
    data = os.urandom(26 * MiB)
    put_fragment(remote, data)
    assert remote.budget.peak <= 10 * MiB  # type: ignore[attr-defined]
    assert read(remote, fragment_key(sha(data))) == data


def test_s3_probe_finds_conditional_writes(make_remote: RemoteFactory) -> None:
    caps = make_remote("s3").probe()
    assert caps.conditional_put, "moto honours If-None-Match: *"


def test_s3_server_rejects_a_wrong_checksum_header(make_remote: RemoteFactory) -> None:
    """§21: an upload whose x-amz-checksum-sha256 is wrong is refused by the server; the key stays absent."""
    remote = make_remote("s3")
    if not remote.probe().server_checksum:
        pytest.skip("this endpoint (moto) does not verify x-amz-checksum-sha256 on upload; the probe says so. "
                    "gitquilt hashes on the client before every PUT instead (test_wrong_hash_is_refused_…)")
    data = b"payload"
    wrong = base64.b64encode(hashlib.sha256(b"not the payload").digest()).decode()
    key = fragment_key(sha(data))
    with pytest.raises(IntegrityError):
        remote.put_bytes(key, data, checksum_b64=wrong)  # type: ignore[attr-defined]
    assert remote.size(key) is None


def test_s3_prefix_isolation(make_remote: RemoteFactory) -> None:
    a = make_remote("s3", prefix="team-a")
    b = make_remote("s3", prefix="team-ab")
    put_fragment(a, b"A")
    put_fragment(b, b"B")
    assert [o.key for o in a.list("objects/")] == [fragment_key(sha(b"A"))]
    assert [o.key for o in b.list("objects/")] == [fragment_key(sha(b"B"))]


def test_directory_remote_ignores_temporary_files(tmp_path: Path) -> None:
    from gitquilt import fsutil
    from gitquilt.remotes.local import DirectoryRemote

    remote = DirectoryRemote(tmp_path / "r")
    put_fragment(remote, b"x")
    remote.flush()
    d = tmp_path / "r" / "objects" / "sha256" / "aa"
    d.mkdir(parents=True)
    (d / fsutil.tmp_name("frag")).write_bytes(b"partial")
    assert [o.key for o in remote.list("objects/")] == [fragment_key(sha(b"x"))]


class _OneWay(io.RawIOBase):
    """A stream that cannot seek (a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._b.readinto(b)


def test_s3_streamed_put_of_a_large_object(make_remote: RemoteFactory) -> None:
    """Between 8 MiB and the multipart threshold: one PUT streamed from the file, hashed first
    where the server does not check checksums; a wrong hash stores nothing."""
    remote = make_remote("s3")
    data = os.urandom(9 * MiB)
    key, created = put_fragment(remote, data)
    assert created and read(remote, key) == data
    assert remote.request_count() > 0
    wrong = fragment_key(sha(b"not these bytes"))
    with pytest.raises(IntegrityError, match="expected sha256"):
        remote.put(wrong, io.BytesIO(data), len(data), sha(b"not these bytes"))
    assert remote.size(wrong) is None
    short = fragment_key(sha(data + b"x"))
    with pytest.raises(IntegrityError, match="bytes"):
        remote.put(short, io.BytesIO(data), len(data) + 1, sha(data + b"x"))
    assert remote.size(short) is None
    # a source that cannot seek goes through memory instead
    other = os.urandom(9 * MiB)
    assert remote.put(fragment_key(sha(other)), _OneWay(other), len(other), sha(other))  # type: ignore[arg-type]
    assert read(remote, fragment_key(sha(other))) == other
