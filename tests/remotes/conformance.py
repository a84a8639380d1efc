"""The conformance suite every Remote passes (restic's backend tests, dvc's TestRemote).

Subclass :class:`Conformance` and provide a ``remote`` fixture (test_conformance.py does,
for the memory, directory and S3 backends). The suite speaks only the protocol, with
content-addressed keys, so that what passes here is what the transfer engine relies on.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gitquilt.errors import IntegrityError
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes
from gitquilt.remotes import ObjectMissing, Remote, fragment_key, manifest_key, parse_key


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_fragment(remote: Remote, data: bytes, overwrite: bool = False) -> tuple[str, bool]:
    key = fragment_key(sha(data))
    created = remote.put(key, io.BytesIO(data), len(data), sha(data), overwrite=overwrite)
    return key, created


def read(remote: Remote, key: str, start: int = 0, length: int | None = None) -> bytes:
    with remote.get(key, start, length) as body:
        return body.read()


class Conformance:
    """What every backend must do."""

    def test_put_get_roundtrip_and_put_if_absent(self, remote: Remote) -> None:
        data = os.urandom(3000)
        key, created = put_fragment(remote, data)
        remote.flush()
        assert created
        assert read(remote, key) == data
        assert remote.size(key) == len(data)
        key2, created2 = put_fragment(remote, data)
        remote.flush()
        assert key2 == key and not created2, "a second put of an existing key must report it existed"
        assert read(remote, key) == data

    def test_empty_object(self, remote: Remote) -> None:
        key, created = put_fragment(remote, b"")
        remote.flush()
        assert created and read(remote, key) == b"" and remote.size(key) == 0

    def test_missing_key(self, remote: Remote) -> None:
        key = fragment_key(sha(b"never stored"))
        with pytest.raises(ObjectMissing):
            remote.get(key)
        assert remote.size(key) is None
        remote.delete(key)  # deleting what is absent is fine

    def test_ranged_get(self, remote: Remote) -> None:
        data = bytes(range(256)) * 40
        key, _ = put_fragment(remote, data)
        remote.flush()
        assert read(remote, key, 0, 10) == data[:10]
        assert read(remote, key, 1000, 500) == data[1000:1500]
        assert read(remote, key, len(data) - 7) == data[-7:]
        assert read(remote, key, 5, 0) == b""

    def test_wrong_hash_is_refused_and_nothing_stored(self, remote: Remote) -> None:
        good, bad = b"the right bytes", b"the wrong bytes"
        key = fragment_key(sha(good))
        with pytest.raises(IntegrityError, match=f"expected sha256 {sha(good)}"):
            remote.put(key, io.BytesIO(bad), len(bad), sha(good))
        remote.flush()
        assert remote.size(key) is None
        assert list(remote.list("objects/")) == []

    def test_short_source_is_refused_and_nothing_stored(self, remote: Remote) -> None:
        data = b"0123456789"
        key = fragment_key(sha(data))
        with pytest.raises(IntegrityError):
            remote.put(key, io.BytesIO(data[:5]), len(data), sha(data))
        remote.flush()
        assert remote.size(key) is None

    def test_overwrite_replaces(self, remote: Remote) -> None:
        key = "repos/clone.json"
        assert remote.put(key, io.BytesIO(b"one"), 3)
        assert remote.put(key, io.BytesIO(b"three"), 5, overwrite=True)
        remote.flush()
        assert read(remote, key) == b"three"

    def test_delete(self, remote: Remote) -> None:
        key, _ = put_fragment(remote, b"to delete")
        remote.flush()
        remote.delete(key)
        assert remote.size(key) is None
        assert list(remote.list("objects/")) == []

    def test_list_prefixes_sorted_sizes_and_start_after(self, remote: Remote) -> None:
        datas = [f"object {i}".encode() * (i + 1) for i in range(12)]
        keys = sorted(put_fragment(remote, d)[0] for d in datas)
        remote.put("repos/a.json", io.BytesIO(b"{}"), 2)
        remote.flush()
        listed = list(remote.list("objects/sha256/"))
        assert [o.key for o in listed] == keys
        sizes = {fragment_key(sha(d)): len(d) for d in datas}
        assert all(o.size == sizes[o.key] for o in listed)
        assert [o.key for o in remote.list("repos/")] == ["repos/a.json"]
        assert [o.key for o in remote.list("objects/sha256/", start_after=keys[4])] == keys[5:]
        first = keys[0][: len("objects/sha256/") + 1]
        assert [o.key for o in remote.list(first)] == [k for k in keys if k.startswith(first)]
        assert list(remote.list("nothing-here/")) == []
        assert all(o.mtime is None or o.mtime > 0 for o in listed)

    def test_shared_prefixes_are_neither_missed_nor_duplicated(self, remote: Remote) -> None:
        """Keys ``…/ab/…`` and ``…/abc…``-like neighbours (RELIABILITY.md §41)."""
        remote.put("repos/x", io.BytesIO(b"1"), 1)
        remote.put("repos/x.json", io.BytesIO(b"2"), 1)
        remote.put("repos/xy/z", io.BytesIO(b"3"), 1)
        remote.put("repos/xz", io.BytesIO(b"4"), 1)
        remote.flush()
        assert [o.key for o in remote.list("repos/x")] == ["repos/x", "repos/x.json", "repos/xy/z", "repos/xz"]
        assert [o.key for o in remote.list("repos/xy")] == ["repos/xy/z"]
        assert [o.key for o in remote.list("repos/xy/")] == ["repos/xy/z"]

    def test_manifest_roundtrip(self, remote: Remote) -> None:
        manifest = Manifest.from_entries([Entry("a.txt", sha(b"a"), 1, False)], {"message": "m"})
        data = manifest_to_bytes(manifest)
        key = manifest_key(manifest.top_hash)
        assert remote.put(key, io.BytesIO(data), len(data))
        remote.flush()
        assert read(remote, key) == data
        assert parse_key(key) == ("manifest", manifest.top_hash)
        assert [o.key for o in remote.list("manifests/")] == [key]

    def test_concurrent_puts_of_one_key(self, remote: Remote) -> None:
        """Two clones pushing the same fragment at once: both succeed, bytes intact (§32)."""
        data = os.urandom(50_000)
        barrier = threading.Barrier(6)

        def one(_: int) -> bool:
            barrier.wait()
            return put_fragment(remote, data)[1]

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, range(6)))
        remote.flush()
        assert any(results)
        assert read(remote, fragment_key(sha(data))) == data

    def test_request_count_grows(self, remote: Remote) -> None:
        before = remote.request_count()
        put_fragment(remote, b"counted")
        remote.flush()
        remote.size(fragment_key(sha(b"counted")))
        assert remote.request_count() > before

    def test_capabilities(self, remote: Remote) -> None:
        caps = remote.capabilities()
        assert isinstance(caps.parallel_ranges, bool)
        probed = remote.probe()
        assert isinstance(probed.conditional_put, bool) and isinstance(probed.server_checksum, bool)
        # the probe leaves nothing behind
        remote.flush()
        assert list(remote.list("gitquilt-probe/")) == []
