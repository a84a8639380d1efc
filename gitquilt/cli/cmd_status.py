"""``git quilt status``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.errors import CheckFailed

_KIND_WORDS = {"file": "single file", "directory": "directory"}


@click.command("status")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--check", is_flag=True, help="Exit 1 when any package differs from its pointer.")
def command(paths: tuple[str, ...], as_json: bool, check: bool) -> None:
    """Show how each package directory compares with its pointer.

    A package is clean, modified (added/changed/deleted files are listed; a
    directory where the package is a single file, or the reverse, is modified too),
    not hydrated (run `git quilt checkout`), or has a pointer changed since HEAD.
    A symbolic link at a package's path or among its parent directories is an
    error (never followed); so is a package that cannot be read.
    Without PATHS: every package whose pointer git tracks (staged or committed).

    \b
    Example:
      git quilt status --check images
    """
    from gitquilt.ops.status import BROKEN, CLEAN, packages_for_status, status

    render.OUT.json = as_json
    ws = open_workspace()
    results = status(ws, packages_for_status(ws, paths))
    if as_json:
        render.emit_json([s.to_json() for s in results])
    else:
        if not results:
            render.info("no packages (add one with: git quilt add DIR)")
        for s in results:
            extra = "" if s.pointer_vs_head == "unchanged" else f", pointer {s.pointer_vs_head} since HEAD"
            top = f" {s.top_hash[:12]}" if s.top_hash else ""
            render.line(f"{s.path}{top}: {s.state}{extra}")
            if s.error:
                render.line(f"  {s.error}")
            if s.kind_changed:
                pinned, found = s.kind_changed
                render.line(f"  the pointer pins a {_KIND_WORDS[pinned]}; a {_KIND_WORDS[found]} stands in its place")
            for label, keys in (("added", s.added), ("changed", s.changed), ("deleted", s.deleted)):
                prefix = _kind_changed_prefix(s.path, s.kind_changed, label)
                for key in keys[:50]:
                    render.line(f"  {label}: {prefix}{key}")
                if len(keys) > 50:
                    render.line(f"  … and {len(keys) - 50} more {label}")
    broken = [s for s in results if s.state == BROKEN]
    if broken:
        # a package that cannot be read is a failure even without --check
        if as_json:
            raise SystemExit(1)
        raise CheckFailed(f"{len(broken)} package(s) could not be checked: {', '.join(s.path for s in broken)}")
    if check and any(s.state != CLEAN or s.pointer_vs_head != "unchanged" for s in results):
        if as_json:
            raise SystemExit(1)
        raise CheckFailed("packages differ from their pointers")


def _kind_changed_prefix(path: str, kind_changed: tuple[str, str] | None, label: str) -> str:
    """When a directory replaced a single file (or the reverse), the directory's files are
    shown under its name (``x/x``), so that they read apart from the single file ``x``."""
    if kind_changed is None:
        return ""
    side = kind_changed[1] if label == "added" else kind_changed[0]
    return path.rpartition("/")[2] + "/" if side == "directory" else ""
