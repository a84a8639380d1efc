"""``git quilt export``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace

if TYPE_CHECKING:
    from gitquilt.ops.workspace import PackageRef


@click.command("export")
@click.argument("package", type=click.Path())
@click.argument("dest", type=click.Path())
@click.option("--rev", help="Export the package as this commit, tag or branch pins it.")
@click.option("--top-hash", "top_hash", metavar="PREFIX",
              help="Export the cached manifest with this top hash (≥ 7 hex), e.g. files saved by checkout --force.")
@click.option("--force", is_flag=True, help="Overwrite files in DEST that differ from the package.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(package: str, dest: str, rev: str | None, top_hash: str | None, force: bool, as_json: bool) -> None:
    """Write a package's files into DEST as plain copies (never links to the cache).

    Files already in DEST with the right bytes are left as they are; files that
    differ are not overwritten without --force; other files in DEST are kept.

    \b
    Example:
      git quilt export images /tmp/images-v1 --rev v1.0
      git quilt export data restored/ --top-hash 3f2a9c1e5b7d
    """
    from gitquilt.ops.export import export

    render.OUT.json = as_json
    ws = open_workspace()
    ref = ws.package_ref(package) if top_hash is None else _label(package)
    result = export(ws, ref, dest, rev=rev, top_hash=top_hash, force=force, progress=render.Bar())
    if as_json:
        render.emit_json(result.to_json())
        return
    render.info(
        f"{result.path} ({result.top_hash[:12]}) → {dest}: {result.written} written, {result.unchanged} unchanged"
        + (f", {len(result.replaced)} replaced" if result.replaced else "")
    )


def _label(package: str) -> PackageRef:
    """With --top-hash the package only names the export (it may not exist here any more)."""
    from gitquilt.ops.workspace import PackageRef

    return PackageRef(package.rstrip("/").removesuffix(".quilt") or package)
