"""``git quilt checkout``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("checkout")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rev", help="Use the pointers of this commit, tag or branch (git's checkout is not touched).")
@click.option("--force", is_flag=True, help="Replace locally modified files (they are saved in the cache first).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(paths: tuple[str, ...], rev: str | None, force: bool, as_json: bool) -> None:
    """Make package directories match their pointers.

    Only files that differ are written. Files changed locally are never
    overwritten or deleted without --force; with --force they are saved in the
    cache first, and the command says how to get them back.

    \b
    Example:
      git quilt checkout images --rev v1.0
    """
    from gitquilt.ops.checkout import checkout

    render.OUT.json = as_json
    ws = open_workspace()
    refs = ws.packages_from_args(paths, rev)
    bar = render.Bar()
    results = checkout(ws, refs, rev=rev, force=force, progress=bar, fetcher=_fetcher(ws))
    for r in results:
        render.info(
            f"{r.path}: {r.written} written, {r.deleted} deleted, {r.unchanged} unchanged (top hash {r.top_hash[:12]})"
        )
        if r.saved_top_hash:
            render.line(
                f"  saved {len(r.saved)} locally modified file(s) in the cache as {r.saved_top_hash[:12]}; "
                f"get them back with: git quilt export {r.path} DIR --top-hash {r.saved_top_hash[:12]}"
            )
    if as_json:
        render.emit_json([r.__dict__ for r in results])


def _fetcher(ws: object) -> object:
    """The remote fetcher used when fragments are missing (None until remotes exist)."""
    try:
        from gitquilt.ops.autofetch import fetcher_for
    except ImportError:
        return None
    return fetcher_for(ws)
