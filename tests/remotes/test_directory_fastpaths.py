"""The directory remote's fast paths: kernel copies, staged packs, one hash per fetched fragment.

``DirectoryRemote.put_file`` (large cache objects: ``copy_file_range``, then the copy is
hashed), its fallback where the kernel refuses, ``staging_dir``/``put_staged`` (packs
built in the remote's ``tmp/`` and linked), and that every safety property still holds:
a damaged source, remote object or pack is refused and nothing is stored.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gitquilt.errors import IntegrityError, NotFound
from gitquilt.ops.transfer import DamagedOnRemote, fetch_tops, push_tops
from gitquilt.ops.transfer_exec import ChunkReader
from gitquilt.ops.workspace import Workspace
from gitquilt.packplan import RangePart, RangeRead, split_range
from gitquilt.packs import build_packs, pack_key
from gitquilt.remotes import fragment_key
from gitquilt.remotes import local as local_mod
from gitquilt.remotes.local import DirectoryRemote
from tests.conftest import Repo
from tests.remotes.helpers import FAST, add_package, cache_objects, tmp_leftovers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def small_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make 4 KiB fragments take the direct path, copied and hashed 8 KiB at a time, and
    fetched loose fragments of 1 MiB and more get a batch of their own."""
    from gitquilt.ops import transfer

    monkeypatch.setattr(local_mod, "DIRECT_MIN", 4096)
    monkeypatch.setattr(local_mod, "MAP_CHUNK", 8192)
    monkeypatch.setattr(transfer, "OWN_BATCH_MIN", 1 << 20)


def blob(n: int, tag: bytes = b"x") -> bytes:
    return (tag + b"0123456789abcdef" * (n // 16 + 1))[:n]


def source_file(tmp_path: Path, data: bytes, name: str = "src") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# -- put_file ---------------------------------------------------------------------------------
def test_put_file_copies_and_stores_exact_bytes(tmp_path: Path, small_direct: None) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    data = blob(50_000)
    key = fragment_key(sha(data))
    seen: list[int] = []
    assert remote.put_file(key, source_file(tmp_path, data), len(data), sha(data), on_bytes=seen.append)
    remote.flush()
    assert (tmp_path / "remote" / key).read_bytes() == data
    assert sum(seen) == len(data) and len(seen) > 1, "progress is reported per copied chunk"
    assert not remote.put_file(key, source_file(tmp_path, data), len(data), sha(data)), "already there"
    assert tmp_leftovers(tmp_path / "remote") == []


@pytest.mark.parametrize("fail_at", [0, 1], ids=["refused-at-once", "refused-mid-copy"])
def test_put_file_falls_back_when_copy_file_range_is_refused(tmp_path: Path, small_direct: None,
                                                             monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    calls = [0]
    real = os.copy_file_range

    def refusing(src: int, dst: int, count: int, *args: object) -> int:
        calls[0] += 1
        if calls[0] > fail_at:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst, count)

    monkeypatch.setattr(local_mod.os, "copy_file_range", refusing)
    remote = DirectoryRemote(tmp_path / "remote")
    data = blob(30_000, b"fallback")
    key = fragment_key(sha(data))
    seen: list[int] = []
    assert remote.put_file(key, source_file(tmp_path, data), len(data), sha(data), on_bytes=seen.append)
    remote.flush()
    assert (tmp_path / "remote" / key).read_bytes() == data
    assert sum(seen) == len(data), "bytes copied before the refusal are counted once"
    assert calls[0] == fail_at + 1
    assert tmp_leftovers(tmp_path / "remote") == []


def test_put_file_other_errors_are_not_swallowed(tmp_path: Path, small_direct: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_a: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_mod.os, "copy_file_range", full)
    remote = DirectoryRemote(tmp_path / "remote")
    data = blob(10_000)
    with pytest.raises(local_mod.RemotePermanent, match="no space left"):
        remote.put_file(fragment_key(sha(data)), source_file(tmp_path, data), len(data), sha(data))
    assert not (tmp_path / "remote" / fragment_key(sha(data))).exists()
    assert tmp_leftovers(tmp_path / "remote") == []


def test_put_file_refuses_a_damaged_source_and_stores_nothing(tmp_path: Path, small_direct: None) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    good = blob(20_000)
    bad = bytearray(good)
    bad[12_345] ^= 1  # a bit flip in the local cache copy
    key = fragment_key(sha(good))
    with pytest.raises(IntegrityError, match=f"upload of {key}: expected sha256 {sha(good)}, got {sha(bytes(bad))}"):
        remote.put_file(key, source_file(tmp_path, bytes(bad)), len(good), sha(good))
    remote.flush()
    assert not (tmp_path / "remote" / key).exists()
    assert tmp_leftovers(tmp_path / "remote") == []


@pytest.mark.parametrize("delta", [-1, 1], ids=["shorter", "longer"])
def test_put_file_refuses_a_source_of_another_size(tmp_path: Path, small_direct: None, delta: int) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    data = blob(9000)
    key = fragment_key(sha(data))
    with pytest.raises(IntegrityError, match=f"expected {len(data) + delta} bytes"):
        remote.put_file(key, source_file(tmp_path, data), len(data) + delta, sha(data))
    assert not (tmp_path / "remote" / key).exists()


def test_put_file_of_a_missing_source_is_not_found(tmp_path: Path, small_direct: None) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    data = blob(9000)
    with pytest.raises(NotFound):
        remote.put_file(fragment_key(sha(data)), tmp_path / "gone", len(data), sha(data))


def test_put_file_below_the_direct_size_goes_through_the_batch(tmp_path: Path) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    data = b"small fragment"
    key = fragment_key(sha(data))
    assert remote.put_file(key, source_file(tmp_path, data), len(data), sha(data))
    remote.flush()  # batched: in place after the flush
    assert (tmp_path / "remote" / key).read_bytes() == data


def test_direct_put_from_a_stream_verifies_too(tmp_path: Path, small_direct: None) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    good, bad = blob(10_000), blob(10_000, b"y")
    key = fragment_key(sha(good))
    with pytest.raises(IntegrityError, match=f"expected sha256 {sha(good)}"):
        remote.put(key, io.BytesIO(bad), len(bad), sha(good))
    assert remote.put(key, io.BytesIO(good), len(good), sha(good))
    assert (tmp_path / "remote" / key).read_bytes() == good


# -- staged packs ----------------------------------------------------------------------------------
def _pack_in(directory: Path) -> object:
    blobs = [blob(300 + i, bytes([65 + i])) for i in range(5)]
    [pack] = build_packs(((sha(b), len(b), (lambda b=b: io.BytesIO(b))) for b in blobs), directory, 1 << 20)
    return pack


def test_put_staged_links_a_pack_built_in_the_staging_dir(tmp_path: Path) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    pack = _pack_in(remote.staging_dir())
    assert remote.put_staged(pack.key, pack.path, pack.size, pack.pack_id)  # type: ignore[attr-defined]
    assert not remote.put_staged(pack.key, pack.path, pack.size, pack.pack_id)  # type: ignore[attr-defined]
    stored = (tmp_path / "remote" / pack.key).read_bytes()  # type: ignore[attr-defined]
    assert sha(stored) == pack.pack_id  # type: ignore[attr-defined]
    pack.remove()  # type: ignore[attr-defined]
    assert (tmp_path / "remote" / pack.key).read_bytes() == stored, "the remote keeps its own name"  # type: ignore[attr-defined]
    assert tmp_leftovers(tmp_path / "remote") == []


def test_put_staged_refuses_a_wrong_size_and_copies_from_elsewhere(tmp_path: Path) -> None:
    remote = DirectoryRemote(tmp_path / "remote")
    staged = _pack_in(remote.staging_dir())
    with pytest.raises(IntegrityError, match="expected"):
        remote.put_staged(staged.key, staged.path, staged.size + 1, staged.pack_id)  # type: ignore[attr-defined]
    assert not (tmp_path / "remote" / staged.key).exists()  # type: ignore[attr-defined]
    staged.remove()  # type: ignore[attr-defined]
    outside = _pack_in(tmp_path / "elsewhere")  # not in the staging dir: copied and hashed like any put
    assert remote.put_staged(outside.key, outside.path, outside.size, outside.pack_id)  # type: ignore[attr-defined]
    assert sha((tmp_path / "remote" / outside.key).read_bytes()) == outside.pack_id  # type: ignore[attr-defined]
    outside.remove()  # type: ignore[attr-defined]


# -- through the engine ----------------------------------------------------------------------------------
def _data() -> dict[str, bytes]:
    """Small files (packed) and a few above the test's direct size (loose, copied in the kernel)."""
    out = {f"s/f{i:03d}": f"small {i} ".encode() * (5 + i % 40) for i in range(60)}
    out.update({f"big/b{i}": blob(1_200_000 + 4096 * i, bytes([97 + i])) for i in range(3)})
    return out


def test_push_and_fetch_through_the_fast_paths(make_repo: Callable[..., Repo], tmp_path: Path,
                                               small_direct: None) -> None:
    data = _data()
    ws, top = add_package(make_repo("src"), data)
    remote = DirectoryRemote(tmp_path / "remote")
    s = push_tops(ws, [top], backend=remote, policy=FAST)
    assert s.packs == 1 and s.fragments == len(data) and s.manifests == 1
    assert tmp_leftovers(tmp_path / "remote") == [] and tmp_leftovers(ws.cache.root) == []
    assert list((ws.cache.root / "tmp").iterdir()) == [], "the pack was built on the remote, not in the cache"
    dst = Workspace.open(make_repo("dst").root)
    f = fetch_tops(dst, [top], backend=DirectoryRemote(tmp_path / "remote"), policy=FAST)
    assert f.fragments == len(data)
    for content in data.values():
        with dst.cache.open(sha(content)) as fh:
            assert fh.read() == content


def test_damaged_large_object_on_the_remote_is_refused(make_repo: Callable[..., Repo], tmp_path: Path,
                                                       small_direct: None) -> None:
    data = _data()
    ws, top = add_package(make_repo("src"), data)
    push_tops(ws, [top], backend=DirectoryRemote(tmp_path / "remote"), policy=FAST)
    victim = sha(data["big/b1"])
    path = tmp_path / "remote" / fragment_key(victim)
    raw = bytearray(path.read_bytes())
    raw[1_000_000] ^= 0x10
    path.write_bytes(bytes(raw))
    dst = Workspace.open(make_repo("dst").root)
    with pytest.raises(DamagedOnRemote, match=f"expected sha256 {victim}"):
        fetch_tops(dst, [top], backend=DirectoryRemote(tmp_path / "remote"), policy=FAST)
    assert not dst.cache.has(victim) and not dst.cache.has(sha(bytes(raw)))
    assert len(cache_objects(dst)) == len(data) - 1, "the intact fragments were kept"
    assert tmp_leftovers(dst.cache.root) == []


def test_damaged_fragment_in_a_pack_on_the_remote_is_refused_naming_it(make_repo: Callable[..., Repo],
                                                                       tmp_path: Path) -> None:
    data = {f"f{i}": f"file {i} ".encode() * 40 for i in range(20)}
    ws, top = add_package(make_repo("src"), data)
    push_tops(ws, [top], backend=DirectoryRemote(tmp_path / "remote"), policy=FAST)
    [pack_file] = (tmp_path / "remote" / "packs").glob("*.pack")
    pid = pack_file.name[: -len(".pack")]
    raw = bytearray(pack_file.read_bytes())
    victim = sha(data["f7"])
    offset = bytes(raw).find(data["f7"])
    raw[offset + 5] ^= 0x01
    pack_file.write_bytes(bytes(raw))
    dst = Workspace.open(make_repo("dst").root)
    with pytest.raises(DamagedOnRemote) as exc:
        fetch_tops(dst, [top], backend=DirectoryRemote(tmp_path / "remote"), policy=FAST)
    message = str(exc.value)
    assert f"{pack_key(pid)}" in message or f"pack {pid}" in message
    assert f"fragment {victim} at offset {offset}: expected sha256 {victim}, got " in message
    assert not dst.cache.has(victim)
    assert len(cache_objects(dst)) == len(data) - 1, "the intact fragments were kept"


def test_damaged_cache_copy_is_caught_when_pushed_loose(make_repo: Callable[..., Repo], tmp_path: Path,
                                                        small_direct: None) -> None:
    data = _data()
    ws, top = add_package(make_repo("src"), data)
    victim = sha(data["big/b2"])
    path = ws.cache.object_path(victim)
    os.chmod(path, 0o644)
    raw = bytearray(path.read_bytes())
    raw[7] ^= 0x01
    path.write_bytes(bytes(raw))
    remote = DirectoryRemote(tmp_path / "remote")
    with pytest.raises(Exception, match=f"expected sha256 {victim}"):
        push_tops(ws, [top], backend=remote, policy=FAST)
    assert not (tmp_path / "remote" / fragment_key(victim)).exists()
    assert not (tmp_path / "remote" / "manifests").is_dir() or not any((tmp_path / "remote" / "manifests").iterdir())


# -- pieces ----------------------------------------------------------------------------------------------
def test_split_range_without_verification_leaves_the_check_to_the_caller() -> None:
    a, b = b"first fragment", b"second fragment"
    stream = io.BytesIO(a + b"XX" + b)
    rng = RangeRead(0, len(a) + 2 + len(b), (RangePart(sha(a), 0, len(a)), RangePart(sha(b"other"), len(a) + 2, len(b))))
    assert list(split_range(stream, "p" * 64, rng, verify=False)) == [(sha(a), a), (sha(b"other"), b)]
    with pytest.raises(IntegrityError, match=f"fragment {sha(b'other')} at offset {len(a) + 2}"):
        list(split_range(io.BytesIO(a + b"XX" + b), "p" * 64, rng))


def test_chunk_reader_reuses_one_buffer_and_counts() -> None:
    data = os.urandom(300_000)
    seen: list[int] = []
    reader = ChunkReader(io.BufferedReader(io.BytesIO(data)), seen.append, "test", size=65536)  # type: ignore[arg-type]
    out = bytearray()
    views = set()
    while chunk := reader.read(65536):
        views.add(id(memoryview(chunk).obj))
        out += chunk
    assert bytes(out) == data and sum(seen) == len(data) and len(views) == 1
