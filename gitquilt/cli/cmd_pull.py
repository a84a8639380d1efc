"""``git quilt pull``: fetch, then checkout."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("pull")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--remote", "remote_name", help="Remote to fetch from (default: the default remote).")
@click.option("--rev", help="Use the pointers of this commit, tag or branch.")
@click.option("--force", is_flag=True, help="Replace locally modified files (they are saved in the cache first).")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Parallel transfers (default 32).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(paths: tuple[str, ...], remote_name: str | None, rev: str | None, force: bool, jobs: int | None,
            as_json: bool) -> None:
    """Fetch the packages' data from a remote and check them out.

    Typical after `git clone` or `git pull`: brings the data the pointers name into
    the cache, then makes each package directory match its pointer.

    \b
    Example:
      git clone URL repo && cd repo && git quilt pull
    """
    from gitquilt.cli.transfer_render import TransferBar, describe
    from gitquilt.errors import QuiltError
    from gitquilt.ops.checkout import checkout
    from gitquilt.ops.tops import selected_versions, tops_of
    from gitquilt.ops.transfer import PullFetcher

    render.OUT.json = as_json
    ws = open_workspace()
    bar = TransferBar()
    refs = ws.packages_from_args(paths, rev)
    versions = selected_versions(ws, paths, rev, progress=bar)
    # checkout plans first and fetches through this, writing big files while the rest downloads
    fetcher = PullFetcher(tops_of(versions), remote=remote_name, jobs=jobs, progress=bar)
    try:
        results = checkout(ws, refs, rev=rev, force=force, progress=render.Bar(), fetcher=fetcher)
    except QuiltError:
        if not fetcher.started:  # checkout refused before fetching: a pull still fetches
            fetcher(ws, refs, [])
        if fetcher.summary is not None:
            render.info(describe(fetcher.summary))
        raise
    if fetcher.summary is None:  # not reached: checkout always calls a PullFetcher
        fetcher(ws, refs, [])
    summary = fetcher.summary
    assert summary is not None
    render.info(describe(summary))
    for r in results:
        render.info(f"{r.path}: {r.written} written, {r.deleted} deleted, {r.unchanged} unchanged (top hash {r.top_hash[:12]})")
        if r.saved_top_hash:
            render.line(
                f"  saved {len(r.saved)} locally modified file(s) in the cache as {r.saved_top_hash[:12]}; "
                f"get them back with: git quilt export {r.path} DIR --top-hash {r.saved_top_hash[:12]}"
            )
    if as_json:
        render.emit_json({"fetch": summary.to_json(), "checkout": [r.__dict__ for r in results]})
