"""``git quilt push``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("push")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--remote", "remote_name", help="Remote to push to (default: the default remote).")
@click.option("--rev", help="Push the package versions pinned by this commit, tag or branch.")
@click.option("--all", "all_history", is_flag=True, help="Push every version reachable from any ref, tag, stash or reflog.")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Parallel transfers (default 32).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (files, bytes, seconds, requests).")
def command(paths: tuple[str, ...], remote_name: str | None, rev: str | None, all_history: bool,
            jobs: int | None, as_json: bool) -> None:
    """Upload package data (fragments, then manifests) to a remote.

    Without PATHS, every package in the work tree. What the remote already holds
    is learned by listing it and is not sent again, so an interrupted push is
    finished by running it again.

    \b
    Example:
      git quilt push                 # the work tree's packages
      git quilt push images --rev v1.0
      git quilt push --all --remote backup
    """
    from gitquilt.cli.transfer_render import TransferBar, describe
    from gitquilt.ops.tops import selected_versions, tops_of
    from gitquilt.ops.transfer import push_tops

    render.OUT.json = as_json
    ws = open_workspace()
    bar = TransferBar()
    versions = selected_versions(ws, paths, rev, all_history, progress=bar)
    summary = push_tops(ws, tops_of(versions), remote=remote_name, jobs=jobs, progress=bar)
    if as_json:
        render.emit_json(summary.to_json())
    else:
        render.info(describe(summary))
