"""``git quilt verify --remote R [--read-data] [--repair]`` (RELIABILITY.md §22)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Repo
from tests.faults.helpers import store_objects, write_tree
from tests.remotes.helpers import files


def _pushed(make_repo: Callable[..., Repo], url: str, *extra: str, data: dict[str, bytes] | None = None) -> Repo:
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", url, *extra, check=True)
    write_tree(repo.root / "data", data or files(10, size=1500))
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    repo.quilt("push", check=True)
    return repo


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def test_directory_remote_missing_damaged_and_repaired(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote = tmp_path / "remote"  # loose objects (damaged packs: tests/remotes/test_packs_gc_verify.py)
    repo = _pushed(make_repo, str(remote), "--pack-threshold", "0")
    ok = json.loads(repo.quilt("verify", "--remote", "origin", "--json", check=True).stdout)
    assert ok["ok"] and ok["fragments"] == 10 and ok["manifests"] == 1

    objects = sorted(store_objects(remote).items())
    gone_digest, gone = objects[0]
    gone.unlink()
    bad_digest, bad = objects[1]
    _flip(bad)
    r = repo.quilt("verify", "--remote", "origin")
    assert r.returncode == 1 and f"missing objects/sha256/{gone_digest[:2]}/{gone_digest[2:]}" in r.stdout
    assert "1 missing and 0 damaged" in r.stderr, "same-size damage needs --read-data"
    r = repo.quilt("verify", "--remote", "origin", "--read-data", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and len(report["missing"]) == 1
    [damaged] = report["damaged"]
    assert bad_digest[2:] in damaged["key"] and "content hashes to" in damaged["reason"]

    r = repo.quilt("verify", "--remote", "origin", "--read-data", "--repair", check=True)
    assert r.stdout.count("repaired objects/") == 2
    assert json.loads(repo.quilt("verify", "--remote", "origin", "--read-data", "--json", check=True).stdout)["ok"]


def test_damaged_manifest_on_the_remote(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = _pushed(make_repo, str(remote))
    manifest = next((remote / "manifests").iterdir())
    manifest.write_bytes(b"PAR1 not really parquet")
    r = repo.quilt("verify", "--remote", "origin", "--json")
    assert r.returncode == 1
    [damaged] = json.loads(r.stdout)["damaged"]
    assert damaged["key"] == f"manifests/{manifest.name}"


def test_read_data_hashes_multipart_objects_and_ignores_etags(
    make_repo: Callable[..., Repo], moto_url: str, bucket: str, s3_admin: Any,
) -> None:
    """§22: a multipart object replaced by other bytes of the same size (its ETag and composite
    checksum are self-consistent) is caught only by hashing the downloaded bytes — which we do."""
    big = {"model.bin": bytes(range(256)) * (6 * 4096 + 7)}
    repo = _pushed(make_repo, f"s3://{bucket}/v", "--endpoint-url", moto_url, "--region", "us-east-1",
                   "--multipart-threshold", "5MiB", "--multipart-chunksize", "5MiB", data=big)
    assert json.loads(repo.quilt("verify", "--remote", "origin", "--read-data", "--json", check=True).stdout)["ok"]
    [key] = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket, Prefix="v/objects/")["Contents"]]
    assert s3_admin.head_object(Bucket=bucket, Key=key)["ETag"].endswith('-2"'), "uploaded in parts"
    size = len(big["model.bin"])
    evil = b"\x00" * size
    up = s3_admin.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for n, (a, b) in enumerate([(0, 5 << 20), (5 << 20, size)], start=1):
        r = s3_admin.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=evil[a:b])
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3_admin.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                       MultipartUpload={"Parts": parts})
    listed = json.loads(repo.quilt("verify", "--remote", "origin", "--json", check=True).stdout)
    assert listed["ok"], "same size: a listing cannot tell"
    r = repo.quilt("verify", "--remote", "origin", "--read-data", "--json")
    assert r.returncode == 1
    [damaged] = json.loads(r.stdout)["damaged"]
    assert damaged["key"] == key.removeprefix("v/") and "content hashes to" in damaged["reason"]


def test_verify_options_need_remote(repo: Repo) -> None:
    r = repo.quilt("verify", "--read-data")
    assert r.returncode == 2 and "--remote" in r.stderr
