"""End to end through the real ``git quilt`` executable: remotes, push, clone, pull.

A directory remote and S3 (moto's server over HTTP) are driven the way a user would:
init, add, commit, push, ``git clone`` into a fresh directory with an empty cache, pull.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Repo
from tests.faults.helpers import assert_store_consistent, read_tree, write_tree
from tests.remotes.helpers import files

pytestmark = pytest.mark.e2e


def _source(make_repo: Callable[..., Repo], url: str, *remote_args: str, data: dict[str, bytes] | None = None) -> Repo:
    src = make_repo("src")
    src.quilt("remote", "add", "origin", url, *remote_args, check=True)
    write_tree(src.root / "data", data or files(25, size=3000))
    src.quilt("add", "data", check=True)
    src.git("commit", "-qm", "data v1")
    return src


def _clone(src: Repo, tmp_path: Path, name: str = "clone") -> Repo:
    dest = tmp_path / name
    src.git("clone", "-q", str(src.root), str(dest))
    return Repo(dest, src.env)


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_directory_remote_push_clone_pull(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote_dir = tmp_path / "shared" / "quilt"
    remote_dir.parent.mkdir()
    src = _source(make_repo, str(remote_dir))
    r = src.quilt("push", "--json", check=True)
    summary = json.loads(r.stdout)
    assert summary["files"] == 25 and summary["manifests"] == 1 and summary["bytes"] > 0
    assert {"files", "bytes", "seconds", "requests"} <= set(summary)
    assert_store_consistent(remote_dir)
    again = json.loads(src.quilt("push", "--json", check=True).stdout)
    assert (again["files"], again["manifests"]) == (0, 0)

    clone = _clone(src, tmp_path)
    assert not (clone.root / "data").exists()
    clone.quilt("pull", check=True)
    assert read_tree(clone.root / "data") == read_tree(src.root / "data")
    st = json.loads(clone.quilt("status", "--json", "data", check=True).stdout)
    assert st[0]["state"] == "clean"


def test_s3_push_clone_pull(make_repo: Callable[..., Repo], tmp_path: Path, moto_url: str, bucket: str,
                            s3_admin: Any) -> None:
    src = _source(make_repo, f"s3://{bucket}/team/data", "--endpoint-url", moto_url, "--region", "us-east-1")
    summary = json.loads(src.quilt("push", "--json", check=True).stdout)
    assert summary["files"] == 25
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith("team/data/") for k in keys)
    assert not any("gitquilt-probe" in k for k in keys), "the capability probe cleans up"

    clone = _clone(src, tmp_path)
    r = clone.quilt("pull", "--json", check=True)
    assert json.loads(r.stdout)["fetch"]["files"] == 25
    assert read_tree(clone.root / "data") == read_tree(src.root / "data")


def test_checkout_fetches_missing_manifest_and_fragments(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    src = _source(make_repo, str(tmp_path / "remote"))
    src.quilt("push", check=True)
    clone = _clone(src, tmp_path)
    r = clone.quilt("checkout", check=True)  # autofetch: manifest, then fragments
    assert "25 written" in r.stdout
    assert read_tree(clone.root / "data") == read_tree(src.root / "data")
    # checkout.autofetch = false: the missing data is reported instead
    shutil.rmtree(clone.root / "data")
    shutil.rmtree(clone.root / ".git" / "quilt")
    clone.git("config", "quilt.checkout.autofetch", "false")
    r = clone.quilt("checkout")
    assert r.returncode == 1 and "git quilt fetch" in r.stderr


def test_push_all_and_fetch_rev(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    src = _source(make_repo, str(tmp_path / "remote"), data=files(5))
    src.git("tag", "v1")
    write_tree(src.root / "data", {"d0/f00000.bin": b"changed"})
    src.quilt("add", "data", check=True)
    src.git("commit", "-qm", "data v2")
    only_head = json.loads(src.quilt("push", "--json", check=True).stdout)
    assert only_head["manifests"] == 1
    rest = json.loads(src.quilt("push", "--all", "--json", check=True).stdout)
    assert rest["manifests"] == 1 and rest["packages"] == 2
    clone = _clone(src, tmp_path)
    clone.quilt("fetch", "--rev", "v1", check=True)
    clone.git("checkout", "-q", "v1")
    clone.quilt("checkout", check=True)
    assert read_tree(clone.root / "data") == files(5)
    r = clone.quilt("push", "--all", "--rev", "v1")
    assert r.returncode == 2


def test_remote_commands(repo: Repo, tmp_path: Path) -> None:
    repo.quilt("remote", "add", "a", str(tmp_path / "a"), check=True)
    repo.quilt("remote", "add", "b", "s3://my-bucket/x", "--endpoint-url", "http://127.0.0.1:9", "--checksum", "off",
               check=True)
    listed = json.loads(repo.quilt("remote", "list", "--json", check=True).stdout)
    assert [(r["name"], r["default"]) for r in listed] == [("a", True), ("b", False)]
    assert listed[1]["options"] == {"checksum": "off"}
    repo.quilt("remote", "default", "b", check=True)
    assert "* b" in repo.quilt("remote", "list", check=True).stdout
    repo.quilt("remote", "remove", "b", check=True)
    text = (repo.root / ".gitquilt.toml").read_text()
    assert "my-bucket" not in text and 'default_remote = "b"' not in text
    assert ".gitquilt.toml" in repo.git("diff", "--cached", "--name-only").stdout
    r = repo.quilt("remote", "add", "a", "/elsewhere")
    assert r.returncode == 2 and "already exists" in r.stderr


@pytest.mark.parametrize("args", [
    ["remote", "add", "x", "s3://bucket/pre\nfix"],
    ["remote", "add", "x", "s3://bucket/prefix\r"],
    ["remote", "add", "x", "s3://bucket/p", "--endpoint-url", "http://127.0.0.1:9/\nx"],
    ["remote", "add", "x", "s3://bucket/../up"],
    ["remote", "add", "x", "gs://bucket/p"],
    ["remote", "add", "x", "s3://bucket/p", "--endpoint-url", "file:///etc"],
])
def test_remote_add_refuses_control_characters_and_odd_urls(repo: Repo, args: list[str]) -> None:
    """§54/§55: refused before anything is written or requested."""
    before = (repo.root / ".gitquilt.toml").read_bytes()
    r = repo.quilt(*args)
    assert r.returncode != 0
    _one_error_line(r.stderr)
    assert (repo.root / ".gitquilt.toml").read_bytes() == before


@pytest.mark.parametrize("escape", ["\\n", "\\r", "\\u0000"])
def test_tracked_config_with_control_character_in_url_is_refused(repo: Repo, escape: str) -> None:
    (repo.root / ".gitquilt.toml").write_text(f'[remotes.o]\nurl = "s3://bucket/a{escape}b"\n')
    r = repo.quilt("push")
    assert r.returncode == 1
    assert "control character" in _one_error_line(r.stderr)


def test_no_remote_configured(repo: Repo) -> None:
    write_tree(repo.root / "data", {"a": b"a"})
    repo.quilt("add", "data", check=True)
    r = repo.quilt("push")
    assert r.returncode == 1 and "git quilt remote add" in _one_error_line(r.stderr)
    r = repo.quilt("push", "--remote", "nope")
    assert r.returncode == 1 and "no remote named 'nope'" in _one_error_line(r.stderr)
