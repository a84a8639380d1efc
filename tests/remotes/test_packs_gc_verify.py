"""``gc --remote`` and ``verify --remote`` over packs (issue 4, items 5–7).

The scene: three package versions pushed in turn, each into packs of its own —
v0 (garbage, no fragment shared), v1 (garbage, two fragments still used by v2) and
v2 (committed, live). gc drops v0's pack, rewrites v1's mostly-dead pack (its two live
fragments move to a new pack) and keeps v2's. A remote that dies at every step of that
gc still holds every live fragment in an indexed pack, and the rerun completes.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from gitquilt.errors import RemotePermanent
from gitquilt.ops.gc_remote import gc_remote
from gitquilt.ops.remote_packs import PackSettings, survey_packs
from gitquilt.ops.transfer import fetch_tops, push_tops
from gitquilt.ops.transfer_packs import send_pack
from gitquilt.ops.verify_remote import repair_remote, verify_remote
from gitquilt.ops.workspace import Workspace
from gitquilt.packs import build_packs, index_key, pack_key
from gitquilt.remotes import ObjectInfo, Remote, fragment_key, manifest_key
from gitquilt.remotes.memory import MemoryRemote
from tests.conftest import Repo
from tests.faults.helpers import read_tree, write_tree
from tests.remotes.helpers import FAST
from tests.remotes.test_packs_transfer import corrupt, pack_ids

ONE_PACK = PackSettings(target_size=1 << 20)  # each push below makes exactly one pack


def blob(tag: str, i: int) -> bytes:
    return (f"{tag}{i}-".encode() * 700)[:2000]


V0 = {f"h{i}": blob("h", i) for i in range(5)}
V1 = {f"f{i}": blob("f", i) for i in range(10)}
V2 = {"f0": V1["f0"], "f1": V1["f1"], **{f"g{i}": blob("g", i) for i in range(10)}}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(repo: Repo, content: dict[str, bytes]) -> str:
    import shutil

    shutil.rmtree(repo.root / "data", ignore_errors=True)
    write_tree(repo.root / "data", content)
    repo.quilt("add", "data", check=True)
    return (repo.root / "data.quilt").read_text().split('top_hash = "')[1][:64]


@dataclass
class Scene:
    repo: Repo
    ws: Workspace
    remote: MemoryRemote
    tops: dict[str, str]
    packs: dict[str, str]  # version -> its pack id


def make_scene(make_repo: Callable[..., Repo]) -> Scene:
    repo = make_repo("a")
    ws = Workspace.open(repo.root)
    remote = MemoryRemote()
    tops: dict[str, str] = {}
    packs: dict[str, str] = {}
    for name, content in (("v0", V0), ("v1", V1), ("v2", V2)):
        tops[name] = _add(repo, content)
        before = set(pack_ids(remote)[0])
        push_tops(ws, [tops[name]], backend=remote, policy=FAST, packing=ONE_PACK)
        [packs[name]] = set(pack_ids(remote)[0]) - before
    repo.git("commit", "-qm", "v2")
    old = time.time() - 3600
    for key in remote.mtimes:
        remote.mtimes[key] = old  # pushed an hour ago: past a grace period of minutes
    return Scene(repo, ws, remote, tops, packs)


def live_intact(remote: Remote, make_repo: Callable[..., Repo], name: str, top: str) -> None:
    """A fresh clone (no index cache) fetches v2 from the remote, exact bytes; no index lacks its pack."""
    packs, indexes = pack_ids(remote)
    assert set(indexes) <= set(packs), "an index without its pack"
    dst = Workspace.open(make_repo(name).root)
    fetch_tops(dst, [top], backend=remote, policy=FAST)
    for content in V2.values():
        with dst.cache.open(digest(content)) as f:
            assert f.read() == content


GRACE = 10 / 86400  # ten seconds, in days: the scene is older, what gc writes is younger


def test_gc_drops_dead_packs_and_rewrites_mostly_dead_ones(make_repo: Callable[..., Repo]) -> None:
    s = make_scene(make_repo)
    dry = gc_remote(s.ws, backend=s.remote, grace_days=GRACE, policy=FAST)
    assert dry.dry_run and dry.packs == sorted([s.packs["v0"], s.packs["v1"]]) and dry.packs_rewritten == 1
    assert set(dry.manifests) == {s.tops["v0"], s.tops["v1"]}
    dead = {digest(b) for b in V0.values()} | {digest(V1[f"f{i}"]) for i in range(2, 10)}
    assert set(dry.fragments) == dead
    assert sorted(pack_ids(s.remote)[0]) == sorted(s.packs.values()), "a dry run deletes nothing"

    done = gc_remote(s.ws, backend=s.remote, delete=True, grace_days=GRACE, policy=FAST)
    [new] = done.packs_written
    assert sorted(pack_ids(s.remote)[0]) == sorted([s.packs["v2"], new])
    index = survey_packs(s.remote, s.ws.cache.root, 2).indexes[new]
    assert {e.sha256 for e in index} == {digest(V1["f0"]), digest(V1["f1"])}, "the live fragments moved"
    assert manifest_key(s.tops["v2"]) in s.remote.objects and manifest_key(s.tops["v1"]) not in s.remote.objects
    live_intact(s.remote, make_repo, "after", s.tops["v2"])
    again = gc_remote(s.ws, backend=s.remote, delete=True, grace_days=0, policy=FAST)
    assert again.packs == [] and again.fragments == [], "nothing left to collect"


def test_repack_threshold_one_never_rewrites(make_repo: Callable[..., Repo]) -> None:
    s = make_scene(make_repo)
    done = gc_remote(s.ws, backend=s.remote, delete=True, grace_days=GRACE, policy=FAST, repack_threshold=1.0)
    assert done.packs == [s.packs["v0"]] and done.packs_written == []
    assert sorted(pack_ids(s.remote)[0]) == sorted([s.packs["v1"], s.packs["v2"]])
    live_intact(s.remote, make_repo, "after", s.tops["v2"])


def test_young_packs_are_kept_and_unreadable_live_manifests_hold_every_pack(make_repo: Callable[..., Repo]) -> None:
    s = make_scene(make_repo)
    young = gc_remote(s.ws, backend=s.remote, grace_days=1, policy=FAST)
    assert young.packs == [] and young.recent >= 3
    # v2's manifest neither in the cache nor on the remote: which fragments are live is unknown
    s.remote.delete(manifest_key(s.tops["v2"]))
    s.ws.cache.manifest_path(s.tops["v2"]).unlink()
    blind = gc_remote(s.ws, backend=s.remote, delete=True, grace_days=0, policy=FAST)
    assert blind.packs == [] and sorted(pack_ids(s.remote)[0]) == sorted(s.packs.values())
    assert any("no fragment is deleted" in w for w in blind.warnings)


def test_orphan_packs_and_dangling_indexes_are_collected_after_the_grace_period(
    make_repo: Callable[..., Repo],
) -> None:
    s = make_scene(make_repo)
    data = [b"orphaned one", b"orphaned two"]
    built = [next(build_packs([(digest(d), len(d), (lambda d=d: io.BytesIO(d)))], s.ws.cache.tmp)) for d in data]
    for b in built:  # a push killed between a pack and its index
        with b.open() as f:
            s.remote.put(b.key, f, b.size, b.pack_id)
    s.remote.mtimes[built[0].key] = time.time() - 3600
    s.remote.put(index_key("ab" * 32), io.BytesIO(b"stale"), 5)  # an index whose pack is gone
    s.remote.mtimes[index_key("ab" * 32)] = time.time() - 3600
    done = gc_remote(s.ws, backend=s.remote, delete=True, grace_days=GRACE, policy=FAST)
    assert built[0].pack_id in done.packs and built[1].pack_id not in done.packs
    assert built[0].key not in s.remote.objects, "the old orphan is gone"
    assert built[1].key in s.remote.objects, "a young orphan may be a push in progress"
    assert index_key("ab" * 32) not in s.remote.objects
    for b in built:
        b.remove()


# -- crash at every step ----------------------------------------------------------------------
class DieAt:
    """A remote that fails (as a kill would) at its Nth change to packs/, manifests/ or objects/."""

    def __init__(self, inner: MemoryRemote, n: int) -> None:
        self.inner = inner
        self.url = inner.url
        self.n = n
        self.seen = 0
        self.log: list[str] = []

    def _step(self, what: str) -> None:
        if what.split(" ", 1)[1].startswith(("locks/", "repos/")):
            return
        self.seen += 1
        if self.seen == self.n:
            raise RemotePermanent(f"killed at {what}")
        self.log.append(what)

    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        self._step(f"put {key}")
        return self.inner.put(key, source, size, sha256, overwrite)

    def delete(self, key: str) -> None:
        self._step(f"delete {key}")
        self.inner.delete(key)

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix, start_after)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_gc_killed_at_every_step_keeps_every_live_fragment(make_repo: Callable[..., Repo]) -> None:
    s = make_scene(make_repo)
    snapshot = (dict(s.remote.objects), dict(s.remote.mtimes))
    full = DieAt(s.remote, 0)
    gc_remote(s.ws, backend=full, delete=True, grace_days=GRACE, jobs=1, policy=FAST)  # type: ignore[arg-type]
    steps = full.log
    # new pack, its index, 2 manifests, 2 old indexes and packs (each index before its pack)
    assert [st.split(" ")[0] + " " + st.split(" ")[1].split("/")[0] for st in steps] == [
        "put packs", "put packs", "delete manifests", "delete manifests", "delete packs", "delete packs",
        "delete packs", "delete packs"]
    assert steps[0].endswith(".pack") and steps[1].endswith(".idx")
    for i in range(4, 8, 2):
        assert steps[i].endswith(".idx") and steps[i + 1] == steps[i][: -len(".idx")] + ".pack"
    for n in range(1, len(steps) + 1):
        s.remote.objects, s.remote.mtimes = dict(snapshot[0]), dict(snapshot[1])
        s.remote._sorted = None
        with pytest.raises(RemotePermanent, match="killed at"):
            gc_remote(s.ws, backend=DieAt(s.remote, n), delete=True, grace_days=GRACE, jobs=1,  # type: ignore[arg-type]
                      policy=FAST)
        live_intact(s.remote, make_repo, f"killed{n}", s.tops["v2"])
        time.sleep(0.01)
        gc_remote(s.ws, backend=s.remote, delete=True, grace_days=0, jobs=1, policy=FAST)  # the rerun completes
        live_intact(s.remote, make_repo, f"rerun{n}", s.tops["v2"])
        packs, indexes = pack_ids(s.remote)
        assert packs == indexes and s.packs["v0"] not in packs and s.packs["v1"] not in packs


# -- verify --remote --read-data ------------------------------------------------------------------
def test_verify_read_data_finds_a_damaged_pack_and_repair_rebuilds_it(make_repo: Callable[..., Repo]) -> None:
    s = make_scene(make_repo)
    tops = [s.tops["v2"]]
    ok = verify_remote(s.ws, tops, backend=s.remote, read_data=True, policy=FAST)
    assert ok.ok and ok.fragments == len(V2) and ok.packs == 2 and ok.bytes > 0
    pid = s.packs["v2"]
    entry = survey_packs(s.remote, s.ws.cache.root, 2).indexes[pid].find(digest(V2["g3"]))
    assert entry is not None
    corrupt(s.remote, pack_key(pid), entry.offset + 10)
    assert verify_remote(s.ws, tops, backend=s.remote, policy=FAST).ok, "same size: only reading can tell"
    bad = verify_remote(s.ws, tops, backend=s.remote, read_data=True, policy=FAST)
    damaged = dict(bad.damaged)
    assert not bad.ok and set(damaged) == {pack_key(pid), fragment_key(digest(V2["g3"]))}
    assert "hash to" in damaged[pack_key(pid)] and "damaged" in damaged[pack_key(pid)]
    assert pack_key(pid) in damaged[fragment_key(digest(V2["g3"]))]
    fixed = repair_remote(s.ws, bad, backend=s.remote)
    assert pack_key(pid) in fixed.repaired and not fixed.unrepairable
    assert fragment_key(digest(V2["g3"])) not in s.remote.objects, "the rebuilt pack made a loose copy needless"
    assert verify_remote(s.ws, tops, backend=s.remote, read_data=True, policy=FAST).ok


def test_repair_uploads_loose_when_the_pack_cannot_be_rebuilt(make_repo: Callable[..., Repo]) -> None:
    """v2's g3 sits only in a pack another clone made (with a fragment this cache never had):
    when that copy is damaged, the pack cannot be rebuilt here, so g3 goes up loose; fetch
    passes over the damaged copy, and verify still names the pack."""
    repo = make_repo("a")
    ws = Workspace.open(repo.root)
    remote = MemoryRemote()
    top = _add(repo, V2)
    repo.git("commit", "-qm", "v2")
    foreign, g3 = b"a fragment only another clone has", V2["g3"]
    built = next(build_packs([(digest(g3), len(g3), lambda: io.BytesIO(g3)),
                              (digest(foreign), len(foreign), lambda: io.BytesIO(foreign))], ws.cache.tmp))
    send_pack(remote, built, FAST)
    built.remove()
    pushed = push_tops(ws, [top], backend=remote, policy=FAST, packing=ONE_PACK)
    assert pushed.skipped == 1, "g3 was already on the remote, in the other clone's pack"
    entry = survey_packs(remote, ws.cache.root, 2).indexes[built.pack_id].find(digest(g3))
    assert entry is not None
    corrupt(remote, pack_key(built.pack_id), entry.offset)
    report = verify_remote(ws, [top], backend=remote, read_data=True, policy=FAST)
    assert {k for k, _ in report.damaged} == {pack_key(built.pack_id), fragment_key(digest(g3))}
    fixed = repair_remote(ws, report, backend=remote)
    assert fixed.unrepairable == [pack_key(built.pack_id)] and fixed.repaired == [fragment_key(digest(g3))]
    after = verify_remote(ws, [top], backend=remote, read_data=True, policy=FAST)
    assert [k for k, _ in after.damaged] == [pack_key(built.pack_id)], "g3 is intact loose; the pack stays damaged"
    dst = Workspace.open(make_repo("dst").root)
    fetch_tops(dst, [top], backend=remote, policy=FAST)
    with dst.cache.open(digest(g3)) as f:
        assert f.read() == g3


# -- the commands ----------------------------------------------------------------------------------
def test_gc_and_verify_commands_over_a_directory_remote(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", str(remote), "--pack-threshold", "4KiB", "--pack-size", "8KiB", check=True)
    _add(repo, V1)
    repo.quilt("push", check=True)
    v2 = _add(repo, V2)
    repo.git("commit", "-qm", "v2")
    repo.quilt("push", check=True)
    dry = json.loads(repo.quilt("gc", "--remote", "origin", "--grace", "0", "--repack-threshold", "0.3", "--json",
                                check=True).stdout)
    assert dry["dry_run"] and dry["packs"] and dry["packs_rewritten"] >= 1
    r = repo.quilt("gc", "--remote", "origin", "--grace", "0", "--delete", "--repack-threshold", "0.3", check=True)
    assert "pack(s)" in r.stderr + r.stdout
    assert repo.quilt("gc", "--remote", "origin", "--repack-threshold", "2").returncode == 2
    ok = json.loads(repo.quilt("verify", "--remote", "origin", "--read-data", "--json", check=True).stdout)
    assert ok["ok"] and ok["packs"] >= 1
    victim = min((remote / "packs").glob("*.pack"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    r = repo.quilt("verify", "--remote", "origin", "--read-data", "--json")
    assert r.returncode == 1
    keys = [d["key"] for d in json.loads(r.stdout)["damaged"]]
    assert f"packs/{victim.name}" in keys
    repo.quilt("verify", "--remote", "origin", "--read-data", "--repair", check=True)
    assert json.loads(repo.quilt("verify", "--remote", "origin", "--read-data", "--json", check=True).stdout)["ok"]
    clone_dir = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(clone_dir))
    Repo(clone_dir, repo.env).quilt("pull", check=True)
    assert read_tree(clone_dir / "data") == V2
    assert v2
