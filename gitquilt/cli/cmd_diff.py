"""``git quilt diff``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace

#: Files shown per package in text output; --json lists them all.
MAX_SHOWN = 200


@click.command("diff")
@click.argument("args", nargs=-1, metavar="[REV1 [REV2]] [PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--stat", "stat_only", is_flag=True, help="Only one summary line per package.")
def command(args: tuple[str, ...], as_json: bool, stat_only: bool) -> None:
    """Show which files of which packages differ between two versions.

    With no revision: HEAD against the pointers in the work tree. With one:
    REV1 against the work tree. With two (or REV1..REV2): REV1 against REV2.
    PATHs limit the packages compared. Both manifests must be in the cache
    (`git quilt fetch` brings them).

    \b
    Example:
      git quilt diff                 # what `git quilt add` changed since HEAD
      git quilt diff v1.0 v2.0 images
    """
    from gitquilt.ops.diff import ADDED, MODIFIED, REMOVED, diff, split_args

    render.OUT.json = as_json
    ws = open_workspace()
    revs, paths = split_args(ws, args)
    rev1 = revs[0] if revs else None
    rev2 = revs[1] if len(revs) > 1 else None
    results = diff(ws, rev1, rev2, paths)
    if as_json:
        render.emit_json([d.to_json() for d in results])
        return
    size = render.human_bytes
    for d in results:
        tops = f"{(d.old_top_hash or '')[:12] or 'none'} → {(d.new_top_hash or '')[:12] or 'none'}"
        counts = f"+{d.count(ADDED)} -{d.count(REMOVED)} ~{d.count(MODIFIED)} files"
        meta = ", metadata changed" if d.meta_changed else ""
        render.line(f"{d.change} package {d.path} ({tops}): {counts}{meta}")
        if stat_only:
            continue
        for f in d.files[:MAX_SHOWN]:
            if f.change == ADDED:
                render.line(f"  added     {f.key}  ({size(f.new_size or 0)})")
            elif f.change == REMOVED:
                render.line(f"  removed   {f.key}  ({size(f.old_size or 0)})")
            else:
                render.line(f"  modified  {f.key}  ({size(f.old_size or 0)} → {size(f.new_size or 0)})")
        if len(d.files) > MAX_SHOWN:
            render.line(f"  … and {len(d.files) - MAX_SHOWN} more (use --json for all)")
    if not results:
        render.info("no package differs")
