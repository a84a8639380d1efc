"""The transfer engine in-process, over the memory remote and the fault wrapper.

These tests exercise the loose-object path (``packing=LOOSE``: every fragment its own
object); tests/remotes/test_packs_transfer.py covers the same faults with packs.

RELIABILITY.md §18–20 (wrong, truncated and unrequested bytes), §25 (ordering, resume),
§30 (dropped connections), §40 (throttling), §41 (pagination), plus the request budget
of a no-op push.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable

import pytest

from gitquilt.errors import MissingFragments, NotFound, RemoteError, RemotePermanent
from gitquilt.manifest import Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes
from gitquilt.ops import transfer_exec
from gitquilt.ops.remote_packs import LOOSE
from gitquilt.ops.transfer import fetch_fragments, fetch_tops, push_tops
from gitquilt.ops.transfer_exec import RetryPolicy, TransferFailed
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import ObjectInfo, fragment_key, manifest_key
from gitquilt.remotes.faults import Fault, FaultyRemote
from gitquilt.remotes.memory import MemoryRemote
from tests.conftest import Repo
from tests.remotes.helpers import (
    FAST,
    Recording,
    add_package,
    cache_objects,
    files,
    synthetic_package,
    tmp_leftovers,
    upload_raw,
)


@pytest.fixture
def pushed(make_repo: Callable[..., Repo]) -> tuple[Workspace, str, dict[str, bytes], MemoryRemote]:
    """A package of 60 files pushed to a memory remote."""
    data = files(60)
    ws, top = add_package(make_repo("src"), data)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST, packing=LOOSE)
    return ws, top, data, remote


@pytest.fixture
def empty_ws(make_repo: Callable[..., Repo]) -> Workspace:
    """A second clone with an empty cache."""
    return Workspace.open(make_repo("dst").root)


def test_push_then_fetch_roundtrip_with_manifest_last(make_repo: Callable[..., Repo], empty_ws: Workspace) -> None:
    data = files(40)
    ws, top = add_package(make_repo("src"), data)
    remote = Recording(MemoryRemote())
    s = push_tops(ws, [top], backend=remote, policy=FAST, packing=LOOSE)  # type: ignore[arg-type]
    assert (s.fragments, s.manifests, s.bytes) == (len(data), 1, sum(map(len, data.values())))
    uploads = [k for k in remote.puts if not k.startswith("repos/")]
    assert uploads[-1] == manifest_key(top), "the manifest goes up after every fragment"
    assert sorted(uploads[:-1]) == sorted(fragment_key(hashlib.sha256(d).hexdigest()) for d in data.values())

    f = fetch_tops(empty_ws, [top], backend=remote, policy=FAST)  # type: ignore[arg-type]
    assert (f.fragments, f.manifests) == (len(data), 1)
    assert cache_objects(empty_ws) == {hashlib.sha256(d).hexdigest() for d in data.values()}
    assert empty_ws.cache.read_manifest(top).top_hash == top


def test_no_op_push_and_fetch(pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote]) -> None:
    ws, top, _data, remote = pushed
    again = push_tops(ws, [top], backend=remote, policy=FAST)
    assert (again.fragments, again.manifests) == (0, 0)
    assert again.requests <= 2
    f = fetch_tops(ws, [top], backend=remote, policy=FAST)
    assert (f.fragments, f.requests) == (0, 0)


def test_no_op_push_of_10000_fragments_lists_instead_of_asking_per_object(make_repo: Callable[..., Repo]) -> None:
    """The manifest is missing (a push killed just before it), the 10,000 fragments are there."""
    ws = Workspace.open(make_repo("big").root)
    top, blobs = synthetic_package(ws, 10_000)
    remote = MemoryRemote()
    upload_raw(remote, blobs)
    s = push_tops(ws, [top], backend=remote, policy=FAST)
    assert (s.fragments, s.manifests, s.skipped) == (0, 1, 10_000)
    assert s.strategy == "list"
    assert s.requests < 100, s.requests


def test_small_push_to_a_big_remote_asks_per_object(make_repo: Callable[..., Repo]) -> None:
    """Listing 60,000 foreign objects (60 pages) to push 40 would cost more than 40 HEADs."""
    ws = Workspace.open(make_repo("small").root)
    top, blobs = synthetic_package(ws, 40, tag="mine")
    remote = MemoryRemote()
    upload_raw(remote, [f"foreign {i}".encode() for i in range(60_000)])
    upload_raw(remote, list(blobs.values())[:10])
    s = push_tops(ws, [top], backend=remote, policy=FAST)
    assert s.strategy == "list+head"
    assert (s.fragments, s.skipped) == (30, 10)
    assert s.requests < 1 + 40 + 5 + 31


def test_pagination_plans_exact_uploads(make_repo: Callable[..., Repo]) -> None:
    """§41: the remote holds 1,500 of 2,000 fragments across listing pages: exactly 500 go up."""
    ws = Workspace.open(make_repo("p").root)
    top, blobs = synthetic_package(ws, 2000)
    inner = MemoryRemote()
    upload_raw(inner, list(blobs.values())[:1500])
    remote = Recording(inner)
    s = push_tops(ws, [top], backend=remote, policy=FAST, packing=LOOSE)  # type: ignore[arg-type]
    frags = [k for k in remote.puts if k.startswith("objects/")]
    assert len(frags) == len(set(frags)) == 500 == s.fragments
    assert len([k for k in inner.objects if k.startswith("objects/")]) == 2000


def test_missing_fragment_in_cache_is_listed(make_repo: Callable[..., Repo]) -> None:
    ws, top = add_package(make_repo("m"), files(5))
    gone = min(ws.cache.iter_objects())
    ws.cache.delete(gone)
    with pytest.raises(MissingFragments) as exc:
        push_tops(ws, [top], backend=MemoryRemote(), policy=FAST)
    assert exc.value.missing == [fragment_key(gone)]
    assert fragment_key(gone) in str(exc.value)


def test_manifest_fails_after_fragments_then_rerun_sends_only_the_manifest(make_repo: Callable[..., Repo]) -> None:
    """§25 'after fragments but before the manifest'."""
    ws, top = add_package(make_repo("o"), files(30))
    inner = MemoryRemote()
    broken = FaultyRemote(inner, [Fault("put", "permanent", rate=1.0, key_contains="manifests/")])
    with pytest.raises(RemotePermanent):
        push_tops(ws, [top], backend=broken, policy=FAST, packing=LOOSE)
    assert manifest_key(top) not in inner.objects
    assert len([k for k in inner.objects if k.startswith("objects/")]) == 30
    s = push_tops(ws, [top], backend=inner, policy=FAST, packing=LOOSE)
    assert (s.fragments, s.manifests, s.skipped) == (0, 1, 30)


def test_a_failed_fragment_keeps_its_manifest_back(make_repo: Callable[..., Repo]) -> None:
    ws, top = add_package(make_repo("f"), files(10))
    inner = MemoryRemote()
    flaky = FaultyRemote(inner, [Fault("put", "transient", rate=1.0, key_contains="objects/sha256/")], seed=1)
    with pytest.raises(TransferFailed, match="could not be uploaded"):
        push_tops(ws, [top], backend=flaky, policy=FAST, packing=LOOSE)
    assert manifest_key(top) not in inner.objects


def test_permanent_error_stops_the_push_at_once(make_repo: Callable[..., Repo]) -> None:
    ws = Workspace.open(make_repo("perm").root)
    top, _ = synthetic_package(ws, 300)
    denied = FaultyRemote(MemoryRemote(), [Fault("put", "permanent", rate=1.0)])
    with pytest.raises(RemotePermanent, match="injected permanent"):
        push_tops(ws, [top], jobs=4, backend=denied, policy=FAST)
    assert denied.calls["put"] < 50, "queued uploads were cancelled, not all tried"


def test_dropped_connections_are_retried_and_resume_sends_nothing_twice(make_repo: Callable[..., Repo]) -> None:
    """§30: ConnectionError after N bytes, on puts and on gets."""
    data = files(20, size=5000)
    ws, top = add_package(make_repo("c"), data)
    inner = MemoryRemote()
    flaky = FaultyRemote(inner, [Fault("put", "connection", at=3, times=2, after_bytes=1000)])
    s = push_tops(ws, [top], backend=flaky, policy=FAST, packing=LOOSE)
    assert s.fragments == 20 and s.retries == 2
    # 20 fragments + the 2 dropped attempts, the manifest, the clone marker: nothing else twice
    assert inner.requests.by_op["put"] == 20 + 2 + 1 + 1
    # a push that dies for good part-way, then a rerun: only what did not arrive goes up
    data2 = files(20, size=5000, tag="x")
    ws2, top2 = add_package(make_repo("c2"), data2)
    doomed = [hashlib.sha256(d).hexdigest()[2:] for d in list(data2.values())[:5]]
    dying = FaultyRemote(inner, [Fault("put", "connection", rate=1.0, after_bytes=2000, key_contains=d) for d in doomed])
    with pytest.raises(TransferFailed, match="5 object"):
        push_tops(ws2, [top2], backend=dying, policy=FAST, packing=LOOSE)
    assert manifest_key(top2) not in inner.objects
    puts = inner.requests.by_op["put"]
    again = push_tops(ws2, [top2], backend=inner, policy=FAST, packing=LOOSE)
    assert (again.fragments, again.skipped, again.manifests) == (5, 15, 1)
    assert inner.requests.by_op["put"] - puts == 5 + 1 + 1


def test_a_connection_that_never_recovers_fails_in_bounded_time_naming_the_key(
    pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote], empty_ws: Workspace,
) -> None:
    _ws, top, _data, remote = pushed
    down = FaultyRemote(remote, [Fault("get", "connection", rate=1.0, after_bytes=10, key_contains="objects/")])
    t0 = time.monotonic()
    with pytest.raises(TransferFailed) as exc:
        fetch_tops(empty_ws, [top], backend=down, policy=FAST)
    assert time.monotonic() - t0 < 20
    assert "objects/sha256/" in str(exc.value) and "connection" in str(exc.value)
    assert cache_objects(empty_ws) == set()
    assert tmp_leftovers(empty_ws.cache.root) == []


def test_corrupted_body_is_refused_and_nothing_is_stored(
    pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote], empty_ws: Workspace,
) -> None:
    """§18: 'expected sha256 X, got Y after N bytes'; nothing stored under either hash."""
    _ws, top, data, remote = pushed
    digest = hashlib.sha256(next(iter(data.values()))).hexdigest()
    evil = FaultyRemote(remote, [Fault("get", "corrupt", rate=1.0, after_bytes=5, key_contains=digest[2:])])
    with pytest.raises(TransferFailed) as exc:
        fetch_tops(empty_ws, [top], backend=evil, policy=FAST)
    message = str(exc.value)
    assert f"expected sha256 {digest}, got " in message and " after " in message
    actual = message.split(", got ")[1].split()[0]
    assert not empty_ws.cache.has(digest) and not empty_ws.cache.has(actual)
    assert len(cache_objects(empty_ws)) == len(data) - 1, "the other fragments were fetched"
    assert tmp_leftovers(empty_ws.cache.root) == []


def test_corruption_once_is_retried(pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote],
                                    empty_ws: Workspace) -> None:
    _ws, top, data, remote = pushed
    once = FaultyRemote(remote, [Fault("get", "corrupt", at=2, after_bytes=0),
                                 Fault("get", "truncate", at=5, after_bytes=3)])
    s = fetch_tops(empty_ws, [top], backend=once, policy=FAST)
    assert s.fragments == len(data) and s.retries == 2


def test_truncated_body_is_never_cached(pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote],
                                        empty_ws: Workspace) -> None:
    """§19: a short body (or a length that disagrees with the manifest) is detected and retried."""
    _ws, top, _data, remote = pushed
    short = FaultyRemote(remote, [Fault("get", "truncate", rate=1.0, after_bytes=100, key_contains="objects/")])
    with pytest.raises(TransferFailed, match=r"expected \d+ bytes, got 100"):
        fetch_tops(empty_ws, [top], backend=short, policy=FAST)
    assert cache_objects(empty_ws) == set()


def test_unrequested_and_malformed_listed_objects_are_ignored(make_repo: Callable[..., Repo]) -> None:
    """§20: a listing that names objects that are not ours: a warning, nothing written or trusted."""
    ws = Workspace.open(make_repo("l").root)
    top, _blobs = synthetic_package(ws, 50)
    inner = MemoryRemote()
    junk = [ObjectInfo("objects/sha256/zz/not-a-hash", 10), ObjectInfo("objects/sha256/0/../../etc", 1),
            ObjectInfo(fragment_key("ab" * 32), 10)]
    lying = FaultyRemote(inner, extra_listing=junk)
    s = push_tops(ws, [top], backend=lying, policy=FAST)
    assert s.fragments == 50
    assert any("ignoring 2 object(s)" in w for w in s.warnings), s.warnings
    assert not ws.cache.has("ab" * 32)


def test_throttling_on_30_percent_of_requests(make_repo: Callable[..., Repo], empty_ws: Workspace) -> None:
    """§40: 503 SlowDown on 30 % of every kind of request; push and fetch complete."""
    ws = Workspace.open(make_repo("t").root)
    top, blobs = synthetic_package(ws, 200)
    inner = MemoryRemote()
    upload_raw(inner, list(blobs.values())[:60])  # so that the planner lists
    faults = [Fault(op, "transient", rate=0.3) for op in ("put", "get", "size", "list")]
    throttled = FaultyRemote(inner, faults, seed=7)
    patient = RetryPolicy(attempts=12, base=0.001, cap=0.005)
    s = push_tops(ws, [top], backend=throttled, jobs=8, policy=patient, packing=LOOSE)
    assert s.fragments == 140 and s.retries > 0
    f = fetch_tops(empty_ws, [top], backend=throttled, jobs=8, policy=patient)
    assert f.fragments == 200
    assert throttled.injected["transient"] > 50


def test_hostile_manifest_from_the_remote_is_not_cached(make_repo: Callable[..., Repo], empty_ws: Workspace) -> None:
    """RELIABILITY.md §1.6: content that does not hash to its top-hash name."""
    real = Manifest.from_entries([Entry("a", "aa" * 32, 1, False)], {})
    other = manifest_to_bytes(Manifest.from_entries([Entry("b", "bb" * 32, 1, False)], {}))
    remote = MemoryRemote()
    remote.put(manifest_key(real.top_hash), io.BytesIO(other), len(other))
    with pytest.raises(RemoteError) as exc:  # retried (it may be damage in transit), then refused
        fetch_tops(empty_ws, [real.top_hash], backend=remote, policy=FAST)
    message = str(exc.value)
    assert manifest_key(real.top_hash) in message and remote.url in message and "not to its name" in message
    assert not empty_ws.cache.has_manifest(real.top_hash)


def test_manifest_missing_on_the_remote(empty_ws: Workspace) -> None:
    with pytest.raises(NotFound, match="manifest"):
        fetch_tops(empty_ws, ["cd" * 32], backend=MemoryRemote(), policy=FAST)


def test_large_fragments_download_as_parallel_ranges(make_repo: Callable[..., Repo], empty_ws: Workspace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_exec, "RANGE_THRESHOLD", 64 * 1024)
    monkeypatch.setattr(transfer_exec, "RANGE_PART", 16 * 1024)
    monkeypatch.setattr(transfer_exec, "DOWNLOAD_MEMORY", 48 * 1024)
    from gitquilt.ops import transfer

    monkeypatch.setattr(transfer, "DOWNLOAD_MEMORY", 48 * 1024)
    big = {f"big{i}.bin": bytes([i]) * (300_000 + i) for i in range(3)}
    ws, top = add_package(make_repo("r"), big)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST, packing=LOOSE)
    flaky = FaultyRemote(remote, [Fault("get", "connection", at=4, after_bytes=100)])
    before = remote.requests.by_op["get"]
    s = fetch_tops(empty_ws, [top], backend=flaky, jobs=4, policy=FAST)
    assert s.fragments == 3 and s.retries == 1
    assert remote.requests.by_op["get"] - before > 3 * 19, "fetched as ranges"
    for data in big.values():
        with empty_ws.cache.open(hashlib.sha256(data).hexdigest()) as f:
            assert f.read() == data


def test_fetch_fragments_without_known_sizes(pushed: tuple[Workspace, str, dict[str, bytes], MemoryRemote],
                                             empty_ws: Workspace) -> None:
    _ws, _top, data, remote = pushed
    digests = {hashlib.sha256(d).hexdigest(): None for d in list(data.values())[:5]}
    s = fetch_fragments(empty_ws, digests, backend=remote, policy=FAST)  # type: ignore[arg-type]
    assert s.fragments == 5 and cache_objects(empty_ws) == set(digests)
