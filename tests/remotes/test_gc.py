"""gc of the cache and of remotes (RELIABILITY.md §27, §33, §43–45)."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitquilt.errors import RemoteError
from gitquilt.ops import gc as gc_mod
from gitquilt.ops.gc import DAY, gc_cache
from gitquilt.ops.gc_remote import gc_remote
from gitquilt.ops.remote_lease import LEASE_KEY, mark_clone
from gitquilt.ops.transfer import push_tops
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes.local import DirectoryRemote
from gitquilt.store import Store
from tests.conftest import Repo
from tests.faults.helpers import read_tree, write_tree
from tests.remotes.helpers import FAST


def _add(repo: Repo, pkg: str, content: dict[str, bytes], *extra: str) -> str:
    write_tree(repo.root / pkg, content)
    repo.quilt("add", pkg, *extra, check=True)
    text = (repo.root / f"{pkg}.quilt").read_text()
    return text.split('top_hash = "')[1].split('"')[0]


def _digests(repo: Repo, top: str) -> set[str]:
    return Workspace.open(repo.root).cache.read_manifest(top).digests()


def _intact(repo: Repo, top: str) -> bool:
    cache = Workspace.open(repo.root).cache
    return cache.has_manifest(top) and all(cache.has(d) for d in cache.read_manifest(top).digests())


def test_gc_keeps_everything_any_reference_names(repo: Repo) -> None:
    """§43: tag, stash, reflog entry, other branch, index, work tree; only garbage goes."""
    g = repo.git
    live: dict[str, str] = {}
    base = _add(repo, "base", {"a": b"base"})
    g("commit", "-qm", "base")
    live["base"] = base
    # a tag only (its branch deleted)
    g("checkout", "-qb", "tmp")
    live["tagged"] = _add(repo, "tagged", {"t": b"tagged only"})
    g("commit", "-qm", "tagged")
    g("tag", "v-tagged")
    g("checkout", "-q", "main")
    g("branch", "-qD", "tmp")
    # another branch
    g("checkout", "-qb", "other")
    live["branch"] = _add(repo, "branch", {"b": b"on another branch"})
    g("commit", "-qm", "branch")
    g("checkout", "-q", "main")
    # a reflog entry only
    live["reflog"] = _add(repo, "reflog", {"r": b"only in the reflog"})
    g("commit", "-qm", "reflog")
    g("reset", "-q", "--hard", "HEAD~1")
    # a stash only
    live["stash"] = _add(repo, "stash", {"s": b"only in a stash"})
    g("stash", "-q")
    # the index only
    live["index"] = _add(repo, "index", {"i": b"staged, not committed"})
    # the working tree only
    live["worktree"] = _add(repo, "wt", {"w": b"added with --no-stage"}, "--no-stage")
    # garbage: a version replaced before it was ever staged
    garbage = _add(repo, "junk", {"j": b"first try"}, "--no-stage")
    garbage_digests = _digests(repo, garbage)
    _add(repo, "junk", {"j": b"second try"}, "--no-stage")

    report = json.loads(repo.quilt("gc", "--grace", "0", "--json", check=True).stdout)
    assert report["manifests"] == [garbage]
    assert set(report["fragments"]) == garbage_digests
    for name, top in live.items():
        assert _intact(repo, top), f"gc deleted data referenced by the {name}"


def test_grace_period_keeps_recent_garbage(repo: Repo) -> None:
    garbage = _add(repo, "junk", {"j": b"first"}, "--no-stage")
    _add(repo, "junk", {"j": b"second"}, "--no-stage")
    report = json.loads(repo.quilt("gc", "--json", check=True).stdout)
    assert report["manifests"] == [] and report["recent"] >= 2
    ws = Workspace.open(repo.root)
    dry = gc_cache(ws, dry_run=True, now=time.time() + 15 * DAY)
    assert dry.manifests == [garbage] and _intact(repo, garbage), "a dry run deletes nothing"
    gc_cache(ws, now=time.time() + 15 * DAY)
    assert not ws.cache.has_manifest(garbage)


def test_only_copy_is_kept_when_a_live_manifest_is_unknown(repo: Repo, tmp_path: Path) -> None:
    """§45: a live version whose manifest is gone from the cache: its fragments look unreferenced;
    only those the default remote holds are deleted."""
    top = _add(repo, "data", {"a": b"pushed", "b": b"only here"})
    repo.git("commit", "-qm", "data")
    ws = Workspace.open(repo.root)
    da, db = (ws.cache.read_manifest(top).get(k).sha256 for k in ("a", "b"))  # type: ignore[union-attr]
    ws.cache.manifest_path(top).unlink()
    report = json.loads(repo.quilt("gc", "--grace", "0", "--json", check=True).stdout)
    assert report["fragments"] == [] and report["only_copies"] == 2, "no remote: everything is kept"
    remote = tmp_path / "remote"
    repo.quilt("remote", "add", "origin", str(remote), check=True)
    holder = DirectoryRemote(remote)
    holder.put(f"objects/sha256/{da[:2]}/{da[2:]}", io.BytesIO(b"pushed"), 6, da)
    holder.flush()
    report = json.loads(repo.quilt("gc", "--grace", "0", "--json", check=True).stdout)
    assert report["fragments"] == [da] and report["only_copies"] == 1
    assert ws.cache.has(db) and not ws.cache.has(da)


def test_shared_cache_needs_the_other_repositories(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    a = make_repo("a", env={"QUILT_CACHE_DIR": str(shared)})
    r = a.quilt("gc", "--dry-run")
    assert r.returncode == 2 and "--repo" in r.stderr
    b = make_repo("b", env={"QUILT_CACHE_DIR": str(shared)})
    top_b = _add(b, "data", {"x": b"b's data"})
    b.git("commit", "-qm", "b")
    a.quilt("gc", "--grace", "0", "--repo", str(b.root), check=True)
    cache = Store(shared)
    assert cache.has_manifest(top_b) and all(cache.has(d) for d in cache.read_manifest(top_b).digests())


def test_kill_during_gc_leaves_no_manifest_without_its_fragments(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """§27: manifests are deleted first; a crash among the fragment deletions is harmless."""
    for i in range(3):
        _add(repo, "junk", {f"f{j}": f"try {i} file {j}".encode() for j in range(10)}, "--no-stage")
    ws = Workspace.open(repo.root)
    calls = {"n": 0}
    real = ws.cache.delete

    def dying(digest: str) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real(digest)

    monkeypatch.setattr(ws.cache, "delete", dying)
    with pytest.raises(KeyboardInterrupt):
        gc_cache(ws, grace_days=0)
    for top in ws.cache.iter_manifests():
        assert all(ws.cache.has(d) for d in ws.cache.read_manifest(top).digests())
    monkeypatch.setattr(ws.cache, "delete", real)
    assert len(gc_cache(ws, grace_days=0).fragments) == 20 - 4


# -- remote ------------------------------------------------------------------------------------
def _remote_scene(make_repo: Callable[..., Repo], tmp_path: Path) -> tuple[Repo, Repo, Path, dict[str, str]]:
    """Clone A pushes a garbage version and a committed one; clone B pushes a version only it has."""
    remote = tmp_path / "remote"
    a = make_repo("a")
    a.quilt("remote", "add", "origin", str(remote), check=True)
    tops = {"garbage": _add(a, "data", {"x": b"never committed", "y": b"shared"})}
    a.quilt("push", check=True)
    tops["v2"] = _add(a, "data", {"x": b"committed", "y": b"shared"})
    a.git("commit", "-qm", "v2")
    a.quilt("push", check=True)
    b_dir = tmp_path / "b"
    a.git("clone", "-q", str(a.root), str(b_dir))
    b = Repo(b_dir, a.env)
    b.quilt("pull", check=True)
    b.git("checkout", "-qb", "b-work")
    tops["b"] = _add(b, "data", {"x": b"only clone b has this", "y": b"shared"})
    b.git("commit", "-qm", "b")
    b.quilt("push", check=True)
    return a, b, remote, tops


def _remote_tops(remote: Path) -> set[str]:
    return {p.name[: -len(".parquet")] for p in (remote / "manifests").iterdir()}


def test_remote_gc_refuses_on_a_shared_remote_and_is_a_dry_run_by_default(
    make_repo: Callable[..., Repo], tmp_path: Path,
) -> None:
    """§44."""
    a, b, remote, tops = _remote_scene(make_repo, tmp_path)
    r = a.quilt("gc", "--remote", "origin")
    assert r.returncode == 2 and "shared" in r.stderr and str(b.root) in r.stderr and "--all-repos" in r.stderr
    before = read_tree(remote)
    dry = json.loads(a.quilt("gc", "--remote", "origin", "--repo", str(b.root), "--grace", "0", "--json",
                             check=True).stdout)
    assert dry["dry_run"] and dry["manifests"] == [tops["garbage"]] and len(dry["fragments"]) == 1
    assert read_tree(remote) == before, "a dry run deletes nothing"
    done = json.loads(a.quilt("gc", "--remote", "origin", "--repo", str(b.root), "--grace", "0", "--delete",
                              "--json", check=True).stdout)
    assert not done["dry_run"] and done["manifests"] == [tops["garbage"]]
    assert _remote_tops(remote) == {tops["v2"], tops["b"]}
    # b's version is still complete on the remote: a fresh clone of b pulls it
    fresh = tmp_path / "fresh"
    b.git("clone", "-q", "-b", "b-work", str(b.root), str(fresh))
    Repo(fresh, b.env).quilt("pull", check=True)
    assert read_tree(fresh / "data")["x"] == b"only clone b has this"
    assert not (remote / "locks" / "gc.json").exists(), "the lease is released"


def test_remote_gc_all_repos_bypasses_the_refusal(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    a, _b, _remote, tops = _remote_scene(make_repo, tmp_path)
    dry = json.loads(a.quilt("gc", "--remote", "origin", "--all-repos", "--grace", "0", "--json",
                             check=True).stdout)
    assert set(dry["manifests"]) == {tops["garbage"], tops["b"]}, "what only the unnamed clone references goes"


def test_push_waits_for_a_gc_lease(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    """§33: while gc holds its lease, a push that would upload is refused; after, it goes."""
    a = make_repo("a")
    top = _add(a, "data", {"x": b"x"})
    ws = Workspace.open(a.root)
    remote = DirectoryRemote(tmp_path / "remote")
    lease = json.dumps({"host": "gc-host", "pid": 1, "started": time.time()}).encode()
    remote.put(LEASE_KEY, io.BytesIO(lease), len(lease))
    with pytest.raises(RemoteError, match="gc --remote is deleting"):
        push_tops(ws, [top], backend=remote, policy=FAST)
    stale = json.dumps({"host": "gc-host", "pid": 1, "started": time.time() - 2 * 3600}).encode()
    remote.put(LEASE_KEY, io.BytesIO(stale), len(stale), overwrite=True)
    assert push_tops(ws, [top], backend=remote, policy=FAST).manifests == 1


def test_remote_gc_aborts_when_a_clone_pushes_meanwhile(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    a, b, remote, _tops = _remote_scene(make_repo, tmp_path)
    ws = Workspace.open(a.root)
    ws_b = Workspace.open(b.root)
    inner = DirectoryRemote(remote)

    class PushDuringGc:
        """Lists like the remote, but clone B pushes while gc lists the fragments."""

        def __init__(self) -> None:
            self.url = inner.url
            self.fired = False

        def list(self, prefix: str, start_after: str | None = None) -> Any:
            if prefix.startswith("objects/") and not self.fired:
                # a push that checked the lease just before gc took it now starts uploading
                self.fired = True
                time.sleep(1.1)  # marker times have a resolution of a second on some servers
                mark_clone(b.root, ws_b.git, inner)
            return inner.list(prefix, start_after)

        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

    before = _remote_tops(remote)
    with pytest.raises(RemoteError, match="while gc was planning"):
        gc_remote(ws, delete=True, grace_days=0, repos=[b.root], backend=PushDuringGc(), policy=FAST)  # type: ignore[arg-type]
    assert before <= _remote_tops(remote), "nothing was deleted"


def test_remote_gc_aborts_leftover_multipart_uploads(make_repo: Callable[..., Repo], moto_url: str, bucket: str,
                                                     s3_admin: Any) -> None:
    """§25: uploads a killed push left behind are listed by the dry run and aborted by --delete."""
    a = make_repo("a")
    a.quilt("remote", "add", "origin", f"s3://{bucket}/g", "--endpoint-url", moto_url, "--region", "us-east-1",
             check=True)
    s3_admin.create_multipart_upload(Bucket=bucket, Key="g/objects/sha256/ab/" + "c" * 62)
    dry = json.loads(a.quilt("gc", "--remote", "origin", "--json", check=True).stdout)
    assert dry["uploads"] == ["objects/sha256/ab/" + "c" * 62]
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads")
    a.quilt("gc", "--remote", "origin", "--delete", check=True)
    assert not s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_gc_usage_errors(repo: Repo) -> None:
    assert repo.quilt("gc", "--delete").returncode == 2
    assert repo.quilt("gc", "--grace", "-1").returncode == 2
    _ = gc_mod


def test_gc_forgets_stat_cache_rows_of_vanished_clones(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    """The stat cache would otherwise grow with every clone that ever shared the cache."""
    repo = make_repo()
    _add(repo, "data", {f"f{i}": bytes([i]) * 10 for i in range(5)})
    cache = repo.root / ".git" / "quilt"
    scratch = tmp_path / "scratch"
    write_tree(scratch, {"a": b"a", "b": b"b"})
    ws = Workspace.open(repo.root)
    ws.statcache.record([(str(scratch / n), 1, 1, 1, "0" * 64) for n in ("a", "b")])
    ws.close()
    shutil.rmtree(scratch)
    p = repo.quilt("gc", "--json", check=True)
    assert json.loads(p.stdout)["statcache_pruned"] == 2
    paths = [r[0] for r in sqlite3.connect(cache / "statcache.sqlite").execute("SELECT path FROM files")]
    assert paths and all(str(repo.root) in p for p in paths)  # the package's own rows stay
    assert ": clean" in repo.quilt("status", check=False).stdout
