"""Small-file packs in the transfer engine (issue 4): push, fetch and their faults.

In-process over the memory, directory and S3 (moto) backends: request budgets, order
(pack before index, fragments before manifest), exact bytes after a fresh clone, a
fragment in two packs, damaged and truncated packs, throttling, a push that dies
between packs and its rerun, hostile indexes, and on-demand ``fetch_digests``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from gitquilt.errors import ConfigError, IntegrityError, RemotePermanent
from gitquilt.ops.remote_packs import LOOSE, PackSettings, survey_packs
from gitquilt.ops.transfer import DamagedOnRemote, fetch_digests, fetch_tops, push_tops
from gitquilt.ops.transfer_exec import RetryPolicy, TransferFailed
from gitquilt.ops.transfer_packs import group_for_packs, send_pack
from gitquilt.ops.workspace import Workspace
from gitquilt.packcache import encode_index
from gitquilt.packs import build_packs, index_key, pack_key, parse_pack_key
from gitquilt.remotes import Remote, fragment_key, manifest_key
from gitquilt.remotes.faults import Fault, FaultyRemote
from gitquilt.remotes.local import DirectoryRemote
from gitquilt.remotes.memory import MemoryRemote
from tests.conftest import Repo
from tests.remotes.helpers import FAST, Recording, add_package, cache_objects, files, synthetic_package, tmp_leftovers

#: Small packs, so that a few hundred files make several; files of 4 KiB and more stay loose.
SMALL = PackSettings(threshold=4096, target_size=64 * 1024)


def mixed(n: int = 120, tag: str = "") -> dict[str, bytes]:
    """Files of 100 B to ~6 KB: most go into packs under SMALL, some stay loose."""
    return {f"d{i % 4}/f{i:04d}": (f"{tag}{i}|".encode() * 2000)[: 100 + (i * 53) % 6000] for i in range(n)}


def keys(remote: Remote, prefix: str) -> list[str]:
    return [o.key for o in remote.list(prefix)]


def pack_ids(remote: Remote) -> tuple[list[str], list[str]]:
    """(ids of pack files, ids of index files) on the remote."""
    parsed = [parse_pack_key(k) for k in keys(remote, "packs/")]
    return (sorted(p[1] for p in parsed if p and p[0] == "pack"), sorted(p[1] for p in parsed if p and p[0] == "index"))


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fresh_ws(make_repo: Callable[..., Repo], name: str = "dst") -> Workspace:
    return Workspace.open(make_repo(name).root)


def assert_cache_holds(ws: Workspace, data: dict[str, bytes]) -> None:
    for content in data.values():
        with ws.cache.open(digest_of(content)) as f:
            assert f.read() == content


def corrupt(remote: MemoryRemote, key: str, at: int) -> bytes:
    """Flip one bit of an object on a memory remote; returns the good bytes."""
    good = remote.objects[key]
    remote.objects[key] = good[:at] + bytes([good[at] ^ 0x01]) + good[at + 1:]
    return good


# -- push ---------------------------------------------------------------------------------------
def test_push_packs_small_files_in_key_order_pack_before_index_manifest_last(make_repo: Callable[..., Repo]) -> None:
    data = mixed()
    ws, top = add_package(make_repo("src"), data)
    remote = Recording(MemoryRemote())
    s = push_tops(ws, [top], backend=remote, policy=FAST, packing=SMALL)  # type: ignore[arg-type]
    small = {k: v for k, v in data.items() if len(v) < SMALL.threshold}
    large = {k: v for k, v in data.items() if len(v) >= SMALL.threshold}
    assert small and large and s.fragments == len(data) and s.manifests == 1
    puts = [k for k in remote.puts if not k.startswith("repos/")]
    assert puts[-1] == manifest_key(top)
    packs, indexes = pack_ids(remote.inner)  # type: ignore[arg-type]
    assert packs == indexes and len(packs) == s.packs > 1
    for pid in packs:
        assert puts.index(pack_key(pid)) < puts.index(index_key(pid)), "a pack goes up before its index"
    loose = {k for k in puts if k.startswith("objects/")}
    assert loose == {fragment_key(digest_of(v)) for v in large.values()}, "large fragments stay loose"
    # the packs hold the small fragments in logical-key order, each exactly once
    key_of = {digest_of(v): k for k, v in small.items()}
    survey = survey_packs(remote.inner, ws.cache.root, 4)  # type: ignore[arg-type]
    runs = sorted([key_of[e.sha256] for e in survey.indexes[pid]] for pid in packs)
    assert [k for run in runs for k in run] == sorted(small)


def test_groups_match_what_build_packs_makes(tmp_path: Path) -> None:
    blobs = [bytes([i]) * (i * 97 % 3000) for i in range(1, 60)]
    items = [(digest_of(b), len(b)) for b in blobs]
    groups = group_for_packs(items, 10_000)
    built = list(build_packs(((d, s, (lambda b=b: io.BytesIO(b))) for (d, s), b in zip(items, blobs)), tmp_path,
                             10_000))
    assert [[d for d, _ in g] for g in groups] == [[e.sha256 for e in p.index] for p in built]
    for p in built:
        p.remove()


@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_push_of_2000_small_files_costs_at_most_n_over_500_plus_10_requests(
    make_repo: Callable[..., Repo], make_remote: Callable[..., Remote], kind: str,
) -> None:
    ws = fresh_ws(make_repo, "src")
    top, _blobs = synthetic_package(ws, 2000)
    remote = make_remote(kind)
    s = push_tops(ws, [top], backend=remote, policy=FAST)
    assert (s.fragments, s.packs, s.manifests) == (2000, 1, 1)
    assert s.requests <= 2000 / 500 + 10, s.requests


def test_no_op_push_of_2000_packed_fragments_from_a_clone_with_no_index_cache(make_repo: Callable[..., Repo]) -> None:
    """The manifest is missing (a push killed just before it); another clone, knowing no
    index yet, learns from one listing and one download per index that everything is there."""
    ws = fresh_ws(make_repo, "a")
    top, _ = synthetic_package(ws, 2000)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST, packing=PackSettings(target_size=1000))
    remote.delete(manifest_key(top))
    other = fresh_ws(make_repo, "b")
    assert synthetic_package(other, 2000)[0] == top
    s = push_tops(other, [top], backend=remote, policy=FAST)
    assert (s.fragments, s.manifests, s.skipped) == (0, 1, 2000)
    assert s.requests < 100, s.requests
    n_packs = len(pack_ids(remote)[0])
    assert n_packs > 10
    assert s.requests <= n_packs + 8, "one GET per index, a few for the rest"
    again = push_tops(other, [top], backend=remote, policy=FAST)
    assert again.requests <= 2


# -- fetch --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "directory", "s3"])
def test_fresh_clone_restores_exact_bytes_from_packs(make_repo: Callable[..., Repo],
                                                     make_remote: Callable[..., Remote], kind: str) -> None:
    data = mixed(150)
    data["empty"] = b""
    ws, top = add_package(make_repo("src"), data)
    remote = make_remote(kind)
    pushed = push_tops(ws, [top], backend=remote, policy=FAST, packing=SMALL)
    assert pushed.packs > 1
    dst = fresh_ws(make_repo)
    f = fetch_tops(dst, [top], backend=remote, policy=FAST)
    assert f.fragments == len({digest_of(v) for v in data.values()}) and f.packs == pushed.packs
    assert cache_objects(dst) == {digest_of(v) for v in data.values()}
    assert_cache_holds(dst, data)
    assert tmp_leftovers(dst.cache.root) == []


def test_directory_remote_opens_each_pack_once(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    data = {f"f{i:03d}": f"{i}".encode() * (50 + i) for i in range(300)}
    ws, top = add_package(make_repo("src"), data)
    remote = DirectoryRemote(tmp_path / "remote")
    push_tops(ws, [top], backend=remote, policy=FAST, packing=PackSettings(target_size=16 * 1024))
    n_packs = len(pack_ids(remote)[0])
    assert n_packs > 3
    # a clone that needs every other file: ranges with gaps, read through one open file per pack
    dst = fresh_ws(make_repo)
    with dst.cache.batch() as b:
        for i, content in enumerate(data.values()):
            if i % 2:
                b.put_bytes(content)
    before = remote.requests.by_op["get"]
    f = fetch_tops(dst, [top], backend=remote, policy=FAST)
    gets = remote.requests.by_op["get"] - before
    assert f.fragments == 150 and f.packs == n_packs
    assert gets == 1 + n_packs + n_packs, "the manifest, each index once, each pack once"
    assert_cache_holds(dst, data)


def test_a_fragment_in_two_packs(make_repo: Callable[..., Repo]) -> None:
    """Another client packed a fragment we also packed: either copy serves; a damaged one
    is passed over for the other."""
    data = {f"f{i}": f"file {i} ".encode() * 30 for i in range(6)}
    ws, top = add_package(make_repo("src"), data)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST)
    [first] = pack_ids(remote)[0]
    shared = digest_of(data["f3"])
    extra = b"only in the second pack"
    second = next(build_packs([(shared, len(data["f3"]), lambda: io.BytesIO(data["f3"])),
                               (digest_of(extra), len(extra), lambda: io.BytesIO(extra))], ws.cache.tmp))
    send_pack(remote, second, FAST)
    second.remove()
    for bad in (first, second.pack_id):
        dst = fresh_ws(make_repo, f"dst-{bad[:6]}")
        index = survey_packs(remote, dst.cache.root, 2).indexes[bad]
        entry = index.find(shared)
        assert entry is not None
        good = corrupt(remote, pack_key(bad), entry.offset + 1)
        f = fetch_tops(dst, [top], backend=remote, policy=FAST)
        remote.objects[pack_key(bad)] = good
        assert f.fragments == len(data)
        assert_cache_holds(dst, data)


def test_damaged_pack_byte_is_refused_naming_pack_and_fragment(make_repo: Callable[..., Repo]) -> None:
    data = {f"f{i}": f"file {i} ".encode() * 40 for i in range(20)}
    ws, top = add_package(make_repo("src"), data)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST)
    [pid] = pack_ids(remote)[0]
    dst = fresh_ws(make_repo)
    entry = survey_packs(remote, dst.cache.root, 2).indexes[pid][7]
    corrupt(remote, pack_key(pid), entry.offset + 5)
    with pytest.raises(DamagedOnRemote) as exc:
        fetch_tops(dst, [top], backend=remote, policy=FAST)
    assert isinstance(exc.value, IntegrityError) and isinstance(exc.value, TransferFailed)
    message = str(exc.value)
    assert f"pack {pid}" in message and f"fragment {entry.sha256}" in message and "expected sha256" in message
    actual = message.split(", got ")[1].split()[0]
    assert not dst.cache.has(entry.sha256) and not dst.cache.has(actual)
    assert len(cache_objects(dst)) == len(data) - 1, "the intact fragments were kept"
    assert tmp_leftovers(dst.cache.root) == []


@pytest.mark.parametrize("kind", ["memory", "directory"])
def test_truncated_range_is_retried_and_never_cached(make_repo: Callable[..., Repo],
                                                     make_remote: Callable[..., Remote], kind: str) -> None:
    data = {f"f{i}": f"file {i} ".encode() * 40 for i in range(20)}
    ws, top = add_package(make_repo("src"), data)
    inner = make_remote(kind)
    push_tops(ws, [top], backend=inner, policy=FAST)
    once = FaultyRemote(inner, [Fault("get", "truncate", at=3, after_bytes=1000, key_contains=".pack")])
    dst = fresh_ws(make_repo)
    s = fetch_tops(dst, [top], backend=once, policy=FAST)
    assert s.retries == 1 and s.fragments == len(data)
    assert_cache_holds(dst, data)
    always = FaultyRemote(inner, [Fault("get", "truncate", rate=1.0, after_bytes=1000, key_contains=".pack")])
    dst2 = fresh_ws(make_repo, "dst2")
    with pytest.raises(TransferFailed, match=r"ended after \d+ bytes"):
        fetch_tops(dst2, [top], backend=always, policy=FAST)
    for digest in cache_objects(dst2):  # what arrived before the cut is whole and verified
        with dst2.cache.open(digest) as f:
            assert digest_of(f.read()) == digest
    assert len(cache_objects(dst2)) < len(data)
    assert tmp_leftovers(dst2.cache.root) == []


def test_throttling_and_dropped_connections_with_packs(make_repo: Callable[..., Repo]) -> None:
    """§30, §40 with packs: 30 % of every request kind fails, bodies drop mid-way; both complete."""
    ws = fresh_ws(make_repo, "src")
    top, blobs = synthetic_package(ws, 600)
    inner = MemoryRemote()
    faults = [Fault(op, "transient", rate=0.3) for op in ("put", "get", "size", "list")]
    faults.append(Fault("get", "connection", rate=0.2, after_bytes=100, key_contains=".pack"))
    throttled = FaultyRemote(inner, faults, seed=5)
    patient = RetryPolicy(attempts=15, base=0.001, cap=0.002)
    settings = PackSettings(target_size=300)
    s = push_tops(ws, [top], backend=throttled, jobs=4, policy=patient, packing=settings)
    assert s.fragments == 600 and s.packs > 3 and s.retries > 0
    dst = fresh_ws(make_repo)
    f = fetch_tops(dst, [top], backend=throttled, jobs=4, policy=patient)
    assert f.fragments == 600 and f.retries > 0
    assert cache_objects(dst) == {digest_of(b) for b in blobs.values()}


# -- a push that dies between packs -----------------------------------------------------------------
def test_push_dying_between_packs_then_rerun_completes(make_repo: Callable[..., Repo]) -> None:
    """§7 of the issue: after some packs, one pack arrives without its index (an orphan);
    no index ever names a missing pack; the rerun sends the orphan's index only."""
    data = {f"f{i:03d}": f"{i}-".encode() * 200 for i in range(120)}
    ws, top = add_package(make_repo("src"), data)
    inner = MemoryRemote()
    settings = PackSettings(target_size=8 * 1024)
    # puts, one at a time: the clone marker, then pack 1, index 1, pack 2, index 2, pack 3, index 3 ← dies
    dying = FaultyRemote(inner, [Fault("put", "permanent", at=7, key_contains=".idx")])
    with pytest.raises(RemotePermanent):
        push_tops(ws, [top], jobs=1, backend=dying, policy=FAST, packing=settings)
    packs, indexes = pack_ids(inner)
    assert set(indexes) <= set(packs), "no index without its pack"
    orphans = set(packs) - set(indexes)
    assert len(indexes) == 2 and len(orphans) == 1
    assert manifest_key(top) not in inner.objects
    puts = inner.requests.by_op["put"]
    s = push_tops(ws, [top], jobs=1, backend=inner, policy=FAST, packing=settings)
    assert s.manifests == 1 and s.packs == len(pack_ids(inner)[0]) - 2
    new_puts = [k for k in inner.objects if k.startswith("packs/")]
    packs2, indexes2 = pack_ids(inner)
    assert packs2 == indexes2 and orphans <= set(packs2)
    # the orphan's bytes were not sent again: one put per new pack and index, plus the orphan's index
    fresh = len(packs2) - len(packs)
    assert inner.requests.by_op["put"] - puts == 2 * fresh + 1 + 1 + 1, new_puts  # + marker + manifest
    dst = fresh_ws(make_repo)
    fetch_tops(dst, [top], backend=inner, policy=FAST)
    assert_cache_holds(dst, data)


def test_a_failed_pack_keeps_the_manifest_back(make_repo: Callable[..., Repo]) -> None:
    ws, top = add_package(make_repo("src"), files(30))
    inner = MemoryRemote()
    flaky = FaultyRemote(inner, [Fault("put", "transient", rate=1.0, key_contains=".pack")])
    with pytest.raises(TransferFailed, match="could not be uploaded"):
        push_tops(ws, [top], backend=flaky, policy=FAST)
    assert manifest_key(top) not in inner.objects
    assert pack_ids(inner) == ([], [])


def test_damaged_cache_copy_is_caught_while_packing(make_repo: Callable[..., Repo]) -> None:
    data = files(10)
    ws, top = add_package(make_repo("src"), data)
    victim = digest_of(next(iter(data.values())))
    path = ws.cache.object_path(victim)
    path.chmod(0o644)
    path.write_bytes(b"x" + path.read_bytes()[1:])
    remote = MemoryRemote()
    with pytest.raises(TransferFailed, match=victim):
        push_tops(ws, [top], backend=remote, policy=FAST)
    assert manifest_key(top) not in remote.objects
    [pid] = pack_ids(remote)[1]
    assert survey_packs(remote, ws.cache.root, 1).indexes[pid].find(victim) is None


# -- hostile or inconsistent packs on the remote -------------------------------------------------
def test_hostile_index_and_size_mismatch_are_ignored(make_repo: Callable[..., Repo]) -> None:
    data = {f"f{i}": f"file {i} ".encode() * 40 for i in range(10)}
    ws, top = add_package(make_repo("src"), data)
    remote = MemoryRemote()
    # junk on the remote before the push: an index that is not Parquet, an index copied under
    # another pack's name, and a pack whose listed size disagrees with its index
    junk_id = "ab" * 32
    remote.put(pack_key(junk_id), io.BytesIO(b"whatever"), 8)
    remote.put(index_key(junk_id), io.BytesIO(b"PAR1 not parquet"), 16)
    blob = b"a lonely fragment"
    built = next(build_packs([(digest_of(blob), len(blob), lambda: io.BytesIO(blob))], ws.cache.tmp))
    liar = "cd" * 32
    remote.put(pack_key(liar), io.BytesIO(b"x" * built.size), built.size)
    idx = encode_index(built.index)
    remote.put(index_key(liar), io.BytesIO(idx), len(idx))
    built.remove()
    s = push_tops(ws, [top], backend=remote, policy=FAST)
    assert s.fragments == len(data)
    assert any("ignoring pack abababababab" in w for w in s.warnings), s.warnings
    assert any("ignoring pack cdcdcdcdcdcd" in w for w in s.warnings), s.warnings
    dst = fresh_ws(make_repo)
    fetch_tops(dst, [top], backend=remote, policy=FAST)
    assert_cache_holds(dst, data)
    assert not dst.cache.has(digest_of(blob))


# -- on-demand reads ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["memory", "s3"])
def test_fetch_digests_reads_single_fragments_by_range(make_repo: Callable[..., Repo],
                                                       make_remote: Callable[..., Remote], kind: str) -> None:
    data = {f"f{i:03d}": f"{i}:".encode() * 400 for i in range(200)}
    ws, top = add_package(make_repo("src"), data)
    remote = make_remote(kind)
    push_tops(ws, [top], backend=remote, policy=FAST)
    dst = fresh_ws(make_repo)
    wanted = [digest_of(data["f010"]), digest_of(data["f150"])]  # far apart: two ranges
    before = remote.request_count()
    s = fetch_digests(dst, wanted, backend=remote, policy=FAST)
    assert s.fragments == 2 and cache_objects(dst) == set(wanted)
    assert remote.request_count() - before == 1 + 1 + 2, "list packs/, one index, one range each"
    assert s.bytes < 2 * 2000, "ranges, not the pack"
    # a second call soon after reuses the listing; one that asks for an unknown fragment lists again
    before = remote.request_count()
    fetch_digests(dst, [digest_of(data["f011"])], backend=remote, policy=FAST)
    assert remote.request_count() - before == 1
    with pytest.raises(TransferFailed, match="is not on"):
        fetch_digests(dst, ["ee" * 32], backend=remote, policy=FAST)


def test_fetch_digests_when_a_pack_vanished_since_the_listing(make_repo: Callable[..., Repo]) -> None:
    """gc rewrote a pack after a reader listed: the reader lists again and finds the new one."""
    data = {f"f{i:03d}": f"{i}:".encode() * 100 for i in range(50)}
    ws, top = add_package(make_repo("src"), data)
    remote = MemoryRemote()
    push_tops(ws, [top], backend=remote, policy=FAST)
    [old] = pack_ids(remote)[0]
    dst = fresh_ws(make_repo)
    fetch_digests(dst, [digest_of(data["f001"])], backend=remote, policy=FAST)  # the listing is remembered
    # "gc": the same fragments in another pack (another order), the old one deleted
    blobs = sorted(data.values(), reverse=True)
    new = next(build_packs([(digest_of(b), len(b), (lambda b=b: io.BytesIO(b))) for b in blobs], ws.cache.tmp))
    send_pack(remote, new, FAST)
    new.remove()
    remote.delete(index_key(old))
    remote.delete(pack_key(old))
    s = fetch_digests(dst, [digest_of(data["f002"])], backend=remote, policy=FAST)
    assert s.fragments == 1
    assert_cache_holds(dst, {"f002": data["f002"]})


# -- settings -----------------------------------------------------------------------------------
def test_pack_settings_from_remote_options() -> None:
    assert PackSettings.from_options({}) == PackSettings(1 << 20, 64 << 20)
    assert PackSettings.from_options({"pack_threshold": "256KiB", "pack_size": "8MiB"}) == PackSettings(
        256 << 10, 8 << 20)
    assert not PackSettings.from_options({"pack_threshold": 0}).enabled
    assert not PackSettings.from_options({"pack_threshold": "0"}).enabled
    assert LOOSE.threshold == 0
    for bad in ({"pack_threshold": "lots"}, {"pack_size": -3}, {"pack_threshold": True},
                {"pack_threshold": "2MiB", "pack_size": "1MiB"}):
        with pytest.raises(ConfigError):
            PackSettings.from_options(bad, "origin")


def test_remote_add_pack_options(repo: Repo) -> None:
    repo.quilt("remote", "add", "origin", str(repo.root / "r"), "--pack-threshold", "64KiB", "--pack-size",
               "4MiB", check=True)
    text = (repo.root / ".gitquilt.toml").read_text()
    assert 'pack_threshold = "64KiB"' in text and 'pack_size = "4MiB"' in text
    r = repo.quilt("remote", "add", "other", str(repo.root / "o"), "--pack-threshold", "many")
    assert r.returncode != 0 and "pack_threshold" in r.stderr and "Traceback" not in r.stderr
    r = repo.quilt("remote", "add", "other", str(repo.root / "o"), "--pack-threshold", "8MiB", "--pack-size", "1MiB")
    assert r.returncode != 0 and "pack_size" in r.stderr


def test_loose_setting_sends_no_pack(make_repo: Callable[..., Repo]) -> None:
    ws, top = add_package(make_repo("src"), files(20))
    remote = MemoryRemote()
    s = push_tops(ws, [top], backend=remote, policy=FAST, packing=LOOSE)
    assert s.packs == 0 and pack_ids(remote) == ([], [])
    assert len(keys(remote, "objects/")) == 20
