"""``git quilt add``."""

from __future__ import annotations

import json

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.errors import UsageError


@click.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-m", "--message", help="A message stored in the package's metadata.")
@click.option("--meta", "meta_json", help="User metadata as a JSON object, stored in the package.")
@click.option("--no-stage", is_flag=True, help="Do not stage the pointer and .gitignore.")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), help="Hashing workers (processes; default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def command(paths: tuple[str, ...], message: str | None, meta_json: str | None, no_stage: bool,
            jobs: int | None, as_json: bool) -> None:
    """Make each directory (or file) a package: hash it into the cache and write PATH.quilt.

    The pointer PATH.quilt and the .gitignore entry for PATH are staged, so the
    next `git commit` pins this exact version. Re-adding unchanged data is a no-op.

    \b
    Example:
      git quilt add images/ models/superres
      git commit -m "data v2"
    """
    user_meta = None
    if meta_json is not None:
        try:
            user_meta = json.loads(meta_json)
        except ValueError:
            raise UsageError("--meta must be a JSON object") from None
        if not isinstance(user_meta, dict):
            raise UsageError("--meta must be a JSON object")
    from gitquilt.ops.add import add_package

    render.OUT.json = as_json
    ws = open_workspace()
    refs = [ws.package_ref(p) for p in paths]
    results = []
    for ref in refs:
        bar = render.Bar()
        r = add_package(ws, ref, message=message, user_meta=user_meta, stage=not no_stage, jobs=jobs, progress=bar)
        results.append(r)
        state = "updated" if r.changed else "unchanged"
        render.info(
            f"{ref.path}: {r.files} files, {render.human_bytes(r.bytes)}, top hash {r.pointer.top_hash[:12]} ({state})"
        )
        if r.staged:
            render.info(f"  staged {', '.join(r.staged)}")
    if as_json:
        render.emit_json([
            {"path": r.ref.path, "pointer": r.ref.pointer, "top_hash": r.pointer.top_hash, "files": r.files,
             "bytes": r.bytes, "changed": r.changed, "staged": r.staged}
            for r in results
        ])
