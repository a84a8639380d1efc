"""``git quilt ls``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("ls")
@click.argument("package", required=False, type=click.Path())
@click.option("--rev", help="List the package as this commit, tag or branch pins it.")
@click.option("--top-hash", "top_hash", metavar="PREFIX", help="List the manifest with this top hash (≥ 7 hex).")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON (full hashes).")
def command(package: str | None, rev: str | None, top_hash: str | None, as_json: bool) -> None:
    """List a package's files: sha256 (short), executable bit, size and key.

    Reads the pointer in the work tree, or in REV's tree with --rev (git's
    checkout is not touched), or the cached manifest named by --top-hash.

    \b
    Example:
      git quilt ls images --rev v1.0
      git quilt ls --top-hash 3f2a9c1 --json
    """
    from gitquilt.ops.ls import ls

    render.OUT.json = as_json
    ws = open_workspace()
    ref = ws.package_ref(package) if package is not None else None
    listing = ls(ws, ref, rev=rev, top_hash=top_hash)
    if as_json:
        render.emit_json(listing.to_json())
        return
    m = listing.manifest
    width = len(str(max(m.sizes, default=0)))
    for i, key in enumerate(m.keys):
        flag = "x" if m.executable_flags[i] else "-"
        render.line(f"{m.sha256(i)[:12]}  {flag}  {m.sizes[i]:>{width}}  {key}")
    render.info(
        f"{listing.pin.path}: {listing.files} files, {render.human_bytes(listing.bytes)}, "
        f"top hash {listing.pin.top_hash[:12]}"
    )
