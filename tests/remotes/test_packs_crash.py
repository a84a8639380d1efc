"""kill -9 of the real executable while it pushes packs, then rerun (issue 4, item 7).

The push is killed once a few packs have their index on the remote. Afterwards no
index names a missing pack, every pack there hashes to its name, no manifest is there
yet; the rerun completes (a pack left without its index gets its index only), and a
fresh clone pulls exact bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Repo
from tests.faults.helpers import cache_root, kill9, read_tree, spawn, temp_files, wait_until, write_tree
from tests.remotes.helpers import files

N = 600
PACK_OPTIONS = ("--pack-threshold", "8KiB", "--pack-size", "8KiB")  # 300 packs of 2 files


def _repo(make_repo: Callable[..., Repo], url: str, *extra: str, n: int = N) -> Repo:
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", url, *extra, *PACK_OPTIONS, check=True)
    write_tree(repo.root / "data", files(n, size=3000))
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    return repo


def _split(keys: list[str]) -> tuple[set[str], set[str]]:
    names = [k.rsplit("/", 1)[-1] for k in keys]
    return {n[:-5] for n in names if n.endswith(".pack")}, {n[:-4] for n in names if n.endswith(".idx")}


def _rerun_and_clone(repo: Repo, tmp_path: Path, indexes: set[str], n: int = N) -> None:
    summary = json.loads(repo.quilt("push", "--json", check=True).stdout)
    assert summary["manifests"] == 1 and summary["files"] + summary["skipped"] == n
    assert summary["skipped"] >= 2 * len(indexes), "what arrived before the kill was not sent again"
    assert summary["files"] > 0, "the crash landed among the packs"
    clone_dir = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(clone_dir))
    Repo(clone_dir, repo.env).quilt("pull", check=True)
    assert read_tree(clone_dir / "data") == read_tree(repo.root / "data")


def test_kill9_while_pushing_packs_to_a_directory_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = _repo(make_repo, str(remote))
    proc = spawn(repo, "push", "-j", "2")
    wait_until(lambda: len(list((remote / "packs").glob("*.idx"))) >= 3 if (remote / "packs").is_dir() else False,
               proc, "the first packs")
    kill9(proc)
    packs, indexes = _split([p.name for p in (remote / "packs").iterdir()])
    assert indexes <= packs, "no index without its pack"
    assert len(indexes) >= 3
    for pid in packs:
        assert hashlib.sha256((remote / "packs" / f"{pid}.pack").read_bytes()).hexdigest() == pid
    assert not (remote / "manifests").is_dir() or not any((remote / "manifests").iterdir())
    _rerun_and_clone(repo, tmp_path, indexes)
    assert temp_files(cache_root(repo)) == [], "the killed push's pack files were cleaned"
    after, after_idx = _split([p.name for p in (remote / "packs").iterdir()])
    assert after == after_idx and packs <= after, "orphans were completed with their index, not re-sent"


def test_kill9_while_pushing_packs_to_s3_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str,
                                                    bucket: str, s3_admin: Any) -> None:
    repo = _repo(make_repo, f"s3://{bucket}/q", "--endpoint-url", moto_url, "--region", "us-east-1", n=240)

    def keys(prefix: str) -> list[str]:
        out: list[str] = []
        for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", ())]
        return out

    proc = spawn(repo, "push", "-j", "2")
    wait_until(lambda: len(_split(keys("q/packs/"))[1]) >= 3, proc, "the first packs")
    kill9(proc)
    packs, indexes = _split(keys("q/packs/"))
    assert indexes <= packs and len(indexes) >= 3
    assert keys("q/manifests/") == []
    _rerun_and_clone(repo, tmp_path, indexes, n=240)
    after, after_idx = _split(keys("q/packs/"))
    assert after == after_idx and packs <= after


def test_packs_option_is_validated_before_anything_is_sent(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    """A bad pack option in a hand-edited .gitquilt.toml: one clear line, nothing on the remote."""
    remote = tmp_path / "remote"
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", str(remote), check=True)
    toml = repo.root / ".gitquilt.toml"
    toml.write_text(toml.read_text() + 'pack_size = "tiny"\n')
    write_tree(repo.root / "data", files(3))
    repo.quilt("add", "data", check=True)
    r = repo.quilt("push")
    assert r.returncode != 0 and "pack_size" in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1
    assert not (remote / "packs").exists() and not (remote / "manifests").exists()
