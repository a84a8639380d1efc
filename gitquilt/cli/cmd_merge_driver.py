"""``git quilt merge-driver BASE OURS THEIRS PATH``: git's merge driver for ``*.quilt``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gitquilt import fsutil
from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.errors import QuiltError

if TYPE_CHECKING:
    from gitquilt.ops.merge import ManifestFetcher
    from gitquilt.ops.workspace import Workspace


@click.command("merge-driver")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("ours", type=click.Path(dir_okay=False))
@click.argument("theirs", type=click.Path(dir_okay=False))
@click.argument("path")
def command(base: str, ours: str, theirs: str, path: str) -> None:
    """Merge three versions of a package pointer (git runs this; see docs/merging.md).

    Files changed on one side, or the same way on both, merge cleanly into a new
    package whose pointer is left in OURS (exit 0). Files changed differently on
    both sides are a conflict (exit 1): they are listed, OURS points at the merge
    with our version of them, and their version stays reachable by its top hash.
    `git quilt install` registers this driver:

    \b
      git config merge.quilt.driver 'git quilt merge-driver %O %A %B %P'
      echo '*.quilt merge=quilt' >> .gitattributes
    """
    from gitquilt.ops.merge import merge_pointers

    ws = open_workspace()
    try:
        result = merge_pointers(ws, _read(base), _read(ours), _read(theirs), path, fetch=_manifest_fetcher(ws))
    except QuiltError as exc:
        raise QuiltError(f"cannot merge {path} (left as our version): {exc}") from None
    finally:
        ws.close()
    fsutil.atomic_write_bytes(Path(ours), result.text)
    for note in result.notes:
        render.warn(f"{path}: {note}")
    if result.clean:
        if result.how == "merged":
            render.info(f"gitquilt: merged {path}: top hash {result.pointer.top_hash[:12]}")
        return
    shown = ", ".join(result.conflicts[:20]) + (f" … ({len(result.conflicts)} in all)" if len(result.conflicts) > 20 else "")
    pkg = path[: -len(".quilt")]
    render.error(
        f"CONFLICT in package {pkg}: {len(result.conflicts)} file(s) changed on both sides: {shown}. "
        f"{path} now keeps our version of them (ours {result.ours[:12]}); "
        f"theirs: git quilt export {pkg} DIR --top-hash {result.theirs[:12]}"
    )
    raise SystemExit(1)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except FileNotFoundError:
        return b""


def _manifest_fetcher(ws: Workspace) -> ManifestFetcher | None:
    """Fetch missing manifests from the default remote, when one is configured."""
    try:
        from gitquilt.ops.transfer import fetch_manifests
    except ImportError:
        return None
    if ws.config.default_remote is None and len(ws.config.remotes) != 1:
        return None

    def fetch(tops: list[str]) -> None:
        fetch_manifests(ws, tops)

    return fetch
