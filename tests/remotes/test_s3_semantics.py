"""S3 semantics and compatibility (RELIABILITY.md §6, §37–40, §56) against moto over HTTP,
with a misbehaving proxy in front where an endpoint must be made to misbehave.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gitquilt.errors import RemotePermanent
from gitquilt.remotes import open_remote
from tests.conftest import Repo
from tests.faults.helpers import read_tree, write_tree
from tests.remotes.conformance import put_fragment
from tests.remotes.conftest import FAKE_AWS, s3_config
from tests.remotes.helpers import files
from tests.remotes.proxy import FaultProxy, Rules

SECRETS = (FAKE_AWS["AWS_SECRET_ACCESS_KEY"], FAKE_AWS["AWS_SESSION_TOKEN"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _repo_with_data(make_repo: Callable[..., Repo], url: str, endpoint: str, *extra: str) -> Repo:
    repo = make_repo("r")
    repo.quilt("remote", "add", "origin", url, "--endpoint-url", endpoint, "--region", "us-east-1", *extra, check=True)
    write_tree(repo.root / "data", files(8, size=2000))
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    return repo


def _empty_cache(repo: Repo) -> None:
    import shutil

    shutil.rmtree(repo.root / ".git" / "quilt")


def _fails_with_one_line(r: Any, *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    for secret in SECRETS:
        assert secret not in r.stderr + r.stdout, "a secret leaked into the output (§56)"
    return lines[0]


# -- §39: one clear line per permanent failure -----------------------------------------------
def test_missing_bucket(make_repo: Callable[..., Repo], moto_url: str) -> None:
    repo = _repo_with_data(make_repo, "s3://no-such-bucket-here/x", moto_url)
    _fails_with_one_line(repo.quilt("push"), "no-such-bucket-here", "does not exist")
    _empty_cache(repo)
    _fails_with_one_line(repo.quilt("fetch"), "does not exist")


def test_endpoint_down(make_repo: Callable[..., Repo], aws_env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"
    repo = _repo_with_data(make_repo, "s3://some-bucket/x", endpoint)
    toml = repo.root / ".gitquilt.toml"
    toml.write_text(toml.read_text() + "max_attempts = 1\n")
    _fails_with_one_line(repo.quilt("push"), "cannot connect", endpoint)


def test_no_credentials(make_repo: Callable[..., Repo], moto_url: str, bucket: str) -> None:
    repo = _repo_with_data(make_repo, f"s3://{bucket}/x", moto_url)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        repo.env.pop(k, None)
    _fails_with_one_line(repo.quilt("push"), "no usable AWS credentials")


@pytest.mark.parametrize("status,code,headers,needle", [
    (403, "AccessDenied", {}, "access denied"),
    (403, "InvalidAccessKeyId", {}, "access denied"),
    (301, "PermanentRedirect", {"x-amz-bucket-region": "eu-west-3"}, "eu-west-3"),
    (400, "AuthorizationHeaderMalformed", {"x-amz-bucket-region": "ap-south-1"}, "another region (ap-south-1)"),
])
def test_denied_and_wrong_region(make_repo: Callable[..., Repo], moto_url: str, bucket: str, status: int, code: str,
                                 headers: dict[str, str], needle: str) -> None:
    with FaultProxy(moto_url, Rules(canned=(status, code, "refused by the test proxy", headers))) as endpoint:
        repo = _repo_with_data(make_repo, f"s3://{bucket}/x", endpoint)
        _fails_with_one_line(repo.quilt("push"), needle)
        _empty_cache(repo)
        _fails_with_one_line(repo.quilt("fetch"), needle)
    assert not (repo.root / ".git" / "quilt" / "tmp").exists() or not any((repo.root / ".git" / "quilt" / "tmp").iterdir())


# -- §37: an endpoint that ignores If-None-Match ----------------------------------------------
def test_ignored_if_none_match_is_detected_and_push_still_works(make_repo: Callable[..., Repo], moto_url: str,
                                                                 bucket: str, tmp_path: Path) -> None:
    with FaultProxy(moto_url, Rules(drop_headers={"if-none-match"})) as endpoint:
        cfg = s3_config(endpoint, bucket, "inm", multipart_threshold="5MiB")
        remote = open_remote(cfg, jobs=4)
        caps = remote.probe()
        assert not caps.conditional_put
        data = b"m" * (6 << 20)
        _, created = put_fragment(remote, data)  # multipart: HEAD-then-PUT
        assert created and put_fragment(remote, data)[1] is False
        remote.close()
        repo = _repo_with_data(make_repo, f"s3://{bucket}/cli", endpoint)
        r = repo.quilt("remote", "check", check=True)
        assert "HEAD-then-PUT" in r.stdout
        repo.quilt("push", check=True)
        clone_dir = tmp_path / "clone"
        repo.git("clone", "-q", str(repo.root), str(clone_dir))
        clone = Repo(clone_dir, repo.env)
        clone.quilt("pull", check=True)
        assert read_tree(clone.root / "data") == read_tree(repo.root / "data")


def test_moto_honours_if_none_match(make_repo: Callable[..., Repo], moto_url: str, bucket: str) -> None:
    repo = _repo_with_data(make_repo, f"s3://{bucket}/cli", moto_url)
    r = repo.quilt("remote", "check", check=True)
    assert "conditional writes (If-None-Match): yes" in r.stdout


# -- §38: an endpoint that rejects SDK checksum headers ----------------------------------------
def test_checksum_header_rejected_names_the_option(make_repo: Callable[..., Repo], moto_url: str, bucket: str) -> None:
    with FaultProxy(moto_url, Rules(reject_header="x-amz-checksum-sha256")) as endpoint:
        repo = _repo_with_data(make_repo, f"s3://{bucket}/ck", endpoint)
        _fails_with_one_line(repo.quilt("push"), 'checksum = "off"')
        repo.quilt("remote", "add", "origin", f"s3://{bucket}/ck", "--endpoint-url", endpoint, "--region",
                   "us-east-1", "--checksum", "off", "--replace", check=True)
        summary = json.loads(repo.quilt("push", "--json", check=True).stdout)
        assert summary["files"] == 8


# -- §40: throttling ---------------------------------------------------------------------------
def test_throttling_30_percent_through_botocore(make_repo: Callable[..., Repo], moto_url: str, bucket: str) -> None:
    """503 SlowDown on 30 % of HTTP requests: botocore's retries and the engine's absorb it."""
    from gitquilt.ops.transfer import fetch_tops, push_tops
    from gitquilt.ops.transfer_exec import RetryPolicy
    from gitquilt.ops.workspace import Workspace
    from tests.remotes.helpers import cache_objects, synthetic_package

    src = Workspace.open(make_repo("src").root)
    dst = Workspace.open(make_repo("dst").root)
    top, _blobs = synthetic_package(src, 40)
    policy = RetryPolicy(attempts=10, base=0.01, cap=0.05)
    with FaultProxy(moto_url, Rules(throttle_rate=0.3, seed=3)) as endpoint:
        remote = open_remote(s3_config(endpoint, bucket, "thr", max_attempts=2), jobs=8)
        try:
            pushed = push_tops(src, [top], backend=remote, jobs=8, policy=policy)
            fetched = fetch_tops(dst, [top], backend=remote, jobs=8, policy=policy)
        finally:
            remote.close()
    assert pushed.fragments == fetched.fragments == 40
    assert pushed.retries + fetched.retries > 0
    assert len(cache_objects(dst)) == 40


# -- other S3 behaviour ------------------------------------------------------------------------
def test_corrupted_object_on_the_bucket_is_refused_on_fetch(make_repo: Callable[..., Repo], tmp_path: Path,
                                                            moto_url: str, bucket: str, s3_admin: Any) -> None:
    """§18 on a real endpoint: wrong bytes on the server never reach the cache."""
    repo = _repo_with_data(make_repo, f"s3://{bucket}/c", moto_url)
    toml = repo.root / ".gitquilt.toml"  # loose objects (a damaged pack: tests/remotes/test_packs_transfer.py)
    toml.write_text(toml.read_text() + "pack_threshold = 0\n")
    repo.quilt("push", check=True)
    objects = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket, Prefix="c/objects/")["Contents"]]
    victim = objects[0]
    good = s3_admin.get_object(Bucket=bucket, Key=victim)["Body"].read()
    s3_admin.put_object(Bucket=bucket, Key=victim, Body=bytes([good[0] ^ 1]) + good[1:])  # same size, one bit
    clone_dir = tmp_path / "clone"
    repo.git("clone", "-q", str(repo.root), str(clone_dir))
    clone = Repo(clone_dir, repo.env)
    digest = victim.split("objects/sha256/")[1].replace("/", "")
    line = _fails_with_one_line(clone.quilt("fetch"), f"expected sha256 {digest}, got ", "could not be fetched")
    assert victim.split("/", 1)[1] in line
    assert not (clone_dir / ".git" / "quilt" / "objects" / "sha256" / digest[:2] / digest[2:]).exists()
    r = clone.quilt("checkout")
    assert r.returncode == 1 and not (clone_dir / "data").exists()


def test_leftover_multipart_uploads_are_listed(moto_url: str, bucket: str, s3_admin: Any) -> None:
    remote = open_remote(s3_config(moto_url, bucket, "lo"), jobs=2)
    s3_admin.create_multipart_upload(Bucket=bucket, Key="lo/objects/sha256/ab/" + "c" * 62)
    s3_admin.create_multipart_upload(Bucket=bucket, Key="other/x")
    uploads = remote.list_uploads()
    assert [u.key for u in uploads] == ["objects/sha256/ab/" + "c" * 62]
    remote.abort_upload(uploads[0])
    assert remote.list_uploads() == []


def test_invalid_options_are_config_errors(moto_url: str, bucket: str) -> None:
    from gitquilt.errors import ConfigError

    for opts in ({"checksum": "md5"}, {"multipart_threshold": "lots"}, {"max_attempts": 0}):
        with pytest.raises(ConfigError):
            open_remote(s3_config(moto_url, bucket, "x", **opts))


def test_permanent_error_on_put_is_one_line(moto_url: str) -> None:
    remote = open_remote(s3_config(moto_url, "absent-bucket-xyz", "p"), jobs=2)
    with pytest.raises(RemotePermanent, match="does not exist"):
        remote.put("repos/a", io.BytesIO(b"x"), 1)
