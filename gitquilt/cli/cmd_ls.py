"""``git quilt ls``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace

if TYPE_CHECKING:
    from gitquilt.ops.ls import Listing

#: Lines per write: a million-file package must not cost a million writes.
CHUNK = 8192


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
    lines = _json_lines(listing) if as_json else _text_lines(listing)
    chunk: list[str] = []
    for text in lines:
        chunk.append(text)
        if len(chunk) >= CHUNK:
            render.line("\n".join(chunk))
            chunk = []
    if chunk:
        render.line("\n".join(chunk))
    if not as_json:
        render.info(
            f"{listing.pin.path}: {listing.files} files, {render.human_bytes(listing.bytes)}, "
            f"top hash {listing.pin.top_hash[:12]}"
        )


def _text_lines(listing: Listing) -> Iterator[str]:
    m = listing.manifest
    hexed, flags, sizes = m.raw_digests.hex(), m.executable_flags, m.sizes
    width = len(str(max(sizes, default=0)))
    for i, key in enumerate(m.keys):
        yield f"{hexed[64 * i : 64 * i + 12]}  {'x' if flags[i] else '-'}  {sizes[i]:>{width}}  {key}"


def _json_lines(listing: Listing) -> Iterator[str]:
    """The JSON document line by line (entries one per line), without building it in memory."""
    head = json.dumps(listing.summary_json(), indent=2, sort_keys=True, ensure_ascii=False)
    m = listing.manifest
    if not len(m):
        yield head[:-2] + ',\n  "entries": []\n}'
        return
    yield head[:-2] + ',\n  "entries": ['
    hexed, flags, sizes, last = m.raw_digests.hex(), m.executable_flags, m.sizes, len(m) - 1
    for i, key in enumerate(m.keys):
        yield (
            f'    {{"executable": {"true" if flags[i] else "false"}, "key": {json.dumps(key, ensure_ascii=False)}, '
            f'"sha256": "{hexed[64 * i : 64 * i + 64]}", "size": {sizes[i]}}}{"" if i == last else ","}'
        )
    yield "  ]\n}"
