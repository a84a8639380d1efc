"""``git quilt fetch``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("fetch")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--remote", "remote_name", help="Remote to fetch from (default: the default remote).")
@click.option("--rev", help="Fetch the package versions pinned by this commit, tag or branch.")
@click.option("--all", "all_history", is_flag=True, help="Fetch every version reachable from any ref, tag, stash or reflog.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Parallel transfers (default 32).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (files, bytes, seconds, requests).")
def command(paths: tuple[str, ...], remote_name: str | None, rev: str | None, all_history: bool,
            jobs: int | None, as_json: bool) -> None:
    """Download package data into the local cache (the work tree is not touched).

    Every manifest and fragment is verified against its hash before it enters
    the cache. Follow with `git quilt checkout`, or use `git quilt pull`.

    \b
    Example:
      git quilt fetch images --rev v1.0
    """
    from gitquilt.cli.transfer_render import TransferBar, describe
    from gitquilt.ops.tops import selected_versions, tops_of
    from gitquilt.ops.transfer import fetch_tops

    render.OUT.json = as_json
    ws = open_workspace()
    bar = TransferBar()
    versions = selected_versions(ws, paths, rev, all_history, progress=bar)
    summary = fetch_tops(ws, tops_of(versions), remote=remote_name, jobs=jobs, progress=bar)
    if as_json:
        render.emit_json(summary.to_json())
    else:
        render.info(describe(summary))
