"""kill -9 and Ctrl-C in the middle of push and fetch, then rerun (RELIABILITY.md §25, §29).

The real executable is killed once the test sees the first objects arrive, so the
crash lands among the uploads. Afterwards: no manifest is visible before all its
fragments, no partial object under a final key, and the rerun completes while
sending nothing that had already arrived.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Repo
from tests.faults.helpers import interrupt, kill9, read_tree, spawn, store_objects, wait_until, write_tree, writing_in
from tests.remotes.helpers import files

N = 400


def _bucket_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", ())]
    return keys


def _settled_count(s3: Any, bucket: str, prefix: str) -> int:
    """How many keys are under ``prefix`` once the server has finished the requests it
    had received when the client was killed (the count is the same twice in a row)."""
    import time

    count = len(_bucket_keys(s3, bucket, prefix))
    for _ in range(50):
        time.sleep(0.2)
        again = len(_bucket_keys(s3, bucket, prefix))
        if again == count:
            return count
        count = again
    return count


def _s3_repo(make_repo: Callable[..., Repo], moto_url: str, bucket: str, data: dict[str, bytes],
             *extra: str) -> Repo:
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", f"s3://{bucket}/q", "--endpoint-url", moto_url, "--region", "us-east-1",
               *extra, check=True)
    write_tree(repo.root / "data", data)
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    return repo


def _loose(repo: Repo) -> None:
    """Every fragment its own object (these tests count objects; packs: test_packs_crash.py)."""
    toml = repo.root / ".gitquilt.toml"
    toml.write_text(toml.read_text() + "pack_threshold = 0\n")


def _pull_in_clone(repo: Repo, tmp_path: Path) -> Repo:
    dest = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(dest))
    clone = Repo(dest, repo.env)
    clone.quilt("pull", check=True)
    assert read_tree(dest / "data") == read_tree(repo.root / "data")
    return clone


def test_kill9_during_s3_push_then_rerun_sends_only_the_rest(
    make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str, bucket: str, s3_admin: Any,
) -> None:
    repo = _s3_repo(make_repo, moto_url, bucket, files(N, size=4000))
    _loose(repo)
    proc = spawn(repo, "push", "-j", "2")
    wait_until(lambda: len(_bucket_keys(s3_admin, bucket, "q/objects/")) >= 20, proc, "the first uploads")
    kill9(proc)
    arrived = _settled_count(s3_admin, bucket, "q/objects/")
    assert 0 < arrived < N, "the crash landed among the uploads"
    assert _bucket_keys(s3_admin, bucket, "q/manifests/") == [], "no manifest before all its fragments"
    summary = json.loads(repo.quilt("push", "--json", check=True).stdout)
    assert summary["files"] == N - arrived and summary["skipped"] == arrived and summary["manifests"] == 1
    _pull_in_clone(repo, tmp_path)


def test_kill9_inside_a_multipart_upload(
    make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str, bucket: str, s3_admin: Any,
) -> None:
    big = {"model.bin": hashlib.sha256(b"seed").digest() * (30 * 1024 * 1024 // 32)}
    repo = _s3_repo(make_repo, moto_url, bucket, big, "--multipart-threshold", "5MiB")
    toml = repo.root / ".gitquilt.toml"
    toml.write_text(toml.read_text() + 'multipart_chunksize = "5MiB"\nmemory = "5MiB"\n')
    proc = spawn(repo, "push", "-j", "1")
    wait_until(lambda: bool(s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads")), proc,
               "a multipart upload in progress")
    kill9(proc)
    assert _bucket_keys(s3_admin, bucket, "q/objects/") == [], "no partial object under its final key"
    summary = json.loads(repo.quilt("push", "--json", check=True).stdout)
    assert summary["files"] == 1
    _pull_in_clone(repo, tmp_path)


def test_kill9_during_directory_push_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", str(remote), check=True)
    _loose(repo)
    write_tree(repo.root / "data", files(1500, size=3000))
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    proc = spawn(repo, "push", "-j", "2")
    wait_until(lambda: (remote / "tmp").is_dir() and writing_in(proc, remote / "tmp"), proc, "uploads in progress")
    kill9(proc)
    assert not (remote / "manifests").is_dir() or not any((remote / "manifests").iterdir())
    for digest, path in store_objects(remote).items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    repo.quilt("push", check=True)
    assert len(store_objects(remote)) == 1500
    _pull_in_clone(repo, tmp_path)


def test_kill9_during_fetch_then_rerun(make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str,
                                       bucket: str) -> None:
    repo = _s3_repo(make_repo, moto_url, bucket, files(N, size=4000))
    repo.quilt("push", check=True)
    dest = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(dest))
    clone = Repo(dest, repo.env)
    cache = dest / ".git" / "quilt"
    proc = spawn(clone, "fetch", "-j", "2")
    wait_until(lambda: writing_in(proc, cache / "tmp"), proc, "downloads in progress")
    kill9(proc)
    for digest, path in store_objects(cache).items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, "a cached fragment holds wrong bytes"
    before = len(store_objects(cache))
    summary = json.loads(clone.quilt("fetch", "--json", check=True).stdout)
    assert summary["files"] == N - before and summary["skipped"] == before
    assert not any((cache / "tmp").iterdir()), "the killed fetch's temporary files were cleaned"
    clone.quilt("checkout", check=True)
    assert read_tree(dest / "data") == read_tree(repo.root / "data")


@pytest.mark.parametrize("command", ["push", "fetch"])
def test_ctrl_c_during_transfer_exits_130_then_rerun_completes(
    make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str, bucket: str, s3_admin: Any, command: str,
) -> None:
    repo = _s3_repo(make_repo, moto_url, bucket, files(N, size=4000))
    target = repo
    if command == "fetch":
        repo.quilt("push", check=True)
        dest = tmp_path / "clone"
        repo.git("clone", "-q", str(repo.root), str(dest))
        target = Repo(dest, repo.env)
        cache = dest / ".git" / "quilt"
        proc = spawn(target, "fetch", "-j", "2")
        wait_until(lambda: len(store_objects(cache)) >= 10, proc, "the first downloads")
    else:
        _loose(repo)
        proc = spawn(repo, "push", "-j", "2")
        wait_until(lambda: len(_bucket_keys(s3_admin, bucket, "q/objects/")) >= 10, proc, "the first uploads")
    rc, _out, err = interrupt(proc, signal.SIGINT)
    assert rc == 130, err
    assert "rerun" in err and "Traceback" not in err
    summary = json.loads(target.quilt(command, "--json", check=True).stdout)
    assert summary["skipped"] >= 10 and summary["files"] + summary["skipped"] == N
