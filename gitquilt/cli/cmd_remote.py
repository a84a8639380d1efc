"""``git quilt remote``: add, list, remove, default, check."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.group("remote")
def command() -> None:
    """Manage remotes: S3-compatible buckets or plain directories.

    Remotes are stored in the tracked .gitquilt.toml, so every clone (a CI job)
    knows them; commit it after a change. Credentials never go there: boto3's
    usual chain (environment, AWS_PROFILE, instance role) provides them.

    \b
    Example:
      git quilt remote add origin s3://my-bucket/datasets --region eu-west-1
      git quilt remote add minio s3://data/x --endpoint-url http://127.0.0.1:9000
      git quilt remote add share /mnt/share/quilt
    """


@command.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint-url", help="S3-compatible endpoint (MinIO, R2, Ceph …): https://host[:port].")
@click.option("--region", help="S3 region of the bucket.")
@click.option("--default", "make_default", is_flag=True, help="Make it the default remote.")
@click.option("--checksum", type=click.Choice(["sha256", "off"]),
              help="Send x-amz-checksum-sha256 (default) or no checksum header (endpoints that reject it).")
@click.option("--multipart-threshold", help="Upload objects at least this large in parts (default 16MiB).")
@click.option("--multipart-chunksize", help="Size of each part (default 16MiB, at least 5MiB).")
@click.option("--pack-threshold", help="Push files smaller than this in packs (default 1MiB; 0: never).")
@click.option("--pack-size", help="Target size of a pack (default 64MiB).")
@click.option("--replace", is_flag=True, help="Change an existing remote.")
@click.option("--check", "check_now", is_flag=True, help="Contact the remote now and report what it supports.")
def add(name: str, url: str, endpoint_url: str | None, region: str | None, make_default: bool,
        checksum: str | None, multipart_threshold: str | None, multipart_chunksize: str | None,
        pack_threshold: str | None, pack_size: str | None, replace: bool, check_now: bool) -> None:
    """Add a remote: s3://bucket/prefix, file:///path, or a directory path.

    \b
    Example:
      git quilt remote add origin s3://my-bucket/datasets
    """
    from gitquilt.ops.remote_config import add_remote

    ws = open_workspace()
    options = {"checksum": checksum, "multipart_threshold": multipart_threshold,
               "multipart_chunksize": multipart_chunksize, "pack_threshold": pack_threshold, "pack_size": pack_size}
    became_default = add_remote(ws, name, url, endpoint_url, region, make_default, options, replace=replace)
    render.info(f"remote {name} -> {url}" + (" (default)" if became_default else ""))
    render.info("staged .gitquilt.toml: commit it so that clones know the remote")
    if check_now:
        _check(name)


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(as_json: bool) -> None:
    """List remotes (the default one is marked with *)."""
    from gitquilt.ops.remote_config import list_remotes

    ws = open_workspace()
    remotes = list_remotes(ws)
    if as_json:
        render.emit_json([r.to_json() for r in remotes])
        return
    for r in remotes:
        extra = "".join(f" {k}={v}" for k, v in (("endpoint", r.endpoint_url), ("region", r.region)) if v)
        extra += "".join(f" {k}={v}" for k, v in sorted(r.options.items()))
        render.line(f"{'*' if r.default else ' '} {r.name}\t{r.url}{extra}")


@command.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Forget a remote (its data is not touched)."""
    from gitquilt.ops.remote_config import remove_remote

    remove_remote(open_workspace(), name)
    render.info(f"removed remote {name}; staged .gitquilt.toml")


@command.command("default")
@click.argument("name")
def default(name: str) -> None:
    """Make NAME the default remote of push, fetch, pull and checkout."""
    from gitquilt.ops.remote_config import set_default

    set_default(open_workspace(), name)
    render.info(f"default remote: {name}; staged .gitquilt.toml")


@command.command("check")
@click.argument("name", required=False)
def check(name: str | None) -> None:
    """Contact a remote and report what it supports (writes and deletes one probe object)."""
    _check(name)


def _check(name: str | None) -> None:
    from gitquilt.ops.transfer import open_workspace_remote

    ws = open_workspace()
    cfg, remote = open_workspace_remote(ws, name, ws.config.jobs)
    try:
        sample = sum(1 for _ in zip(range(10), remote.list("manifests/")))
        caps = remote.probe()
    finally:
        remote.close()
    render.line(f"{cfg.name}: {remote.url}: reachable ({sample} manifest(s) seen in a first listing)")
    render.line(f"  conditional writes (If-None-Match): {'yes' if caps.conditional_put else 'no: HEAD-then-PUT fallback'}")
    render.line(f"  server verifies upload checksums: {'yes' if caps.server_checksum else 'no (gitquilt verifies on the client)'}")
