"""Fixtures for remote tests: a real S3 endpoint (moto's standalone server on 127.0.0.1,
port 0, started once per session), buckets, and a factory of remotes of each kind.

Credentials are fake and live in the environment only (never in-process mocking):
every boto3 client, ours and the subprocesses', talks HTTP to the server.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitquilt.config import RemoteConfig
from gitquilt.remotes import Remote

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_SESSION_TOKEN": "testing-session-token",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Fake credentials in os.environ for the whole session (subprocesses inherit them)."""
    saved = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    yield dict(FAKE_AWS)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_url(aws_env: dict[str, str]) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a moto server started for this session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert port, "moto did not report its port"
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_admin(moto_url: str) -> Any:
    """A plain boto3 client for setting up and inspecting buckets (test side only)."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket(s3_admin: Any) -> str:
    """A new, empty bucket."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_admin.create_bucket(Bucket=name)
    return name


def s3_config(moto_url: str, bucket: str, prefix: str = "quilt", name: str = "origin", **options: Any) -> RemoteConfig:
    return RemoteConfig(name=name, url=f"s3://{bucket}/{prefix}", endpoint_url=moto_url, region="us-east-1",
                        options=options)


RemoteFactory = Callable[..., Remote]


@pytest.fixture(params=["memory", "directory", "s3"])
def remote_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RemoteFactory]:
    """``make_remote(kind, **options)`` → a fresh, empty remote of that kind."""
    opened: list[Remote] = []

    def factory(kind: str, prefix: str | None = None, **options: Any) -> Remote:
        from gitquilt.remotes import open_remote

        if kind == "memory":
            from gitquilt.remotes.memory import MemoryRemote

            remote: Remote = MemoryRemote()
        elif kind == "directory":
            from gitquilt.remotes.local import DirectoryRemote

            remote = DirectoryRemote(tmp_path / f"remote-{uuid.uuid4().hex[:8]}")
        elif kind == "s3":
            url = request.getfixturevalue("moto_url")
            name = request.getfixturevalue("bucket")
            remote = open_remote(s3_config(url, name, prefix or f"p{uuid.uuid4().hex[:6]}", **options), jobs=8)
        else:
            raise ValueError(kind)
        opened.append(remote)
        return remote

    yield factory
    for r in opened:
        r.close()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries back off in milliseconds here (subprocesses inherit it): a failing transfer fails fast."""
    monkeypatch.setenv("GITQUILT_RETRY_BASE", "0.005")
