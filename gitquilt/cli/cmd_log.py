"""``git quilt log``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("log")
@click.argument("package", type=click.Path())
@click.option("--rev", default="HEAD", show_default=True, help="Walk the history reachable from this revision.")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), help="Show at most N commits.")
@click.option("--oneline", is_flag=True, help="One line per commit.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def command(package: str, rev: str, limit: int | None, oneline: bool, as_json: bool) -> None:
    """Show each commit that changed a package's pointer, newest first.

    For each: commit, date, author, message, top hash, files, bytes, and the
    files added/removed/modified (+/-/~) against the previous version ("?"
    when either manifest is not in the cache; `git quilt fetch` brings it).

    \b
    Example:
      git quilt log images -n 5
    """
    from gitquilt.ops.log import log

    render.OUT.json = as_json
    ws = open_workspace()
    ref = ws.package_ref(package)
    entries = log(ws, ref, rev=rev, limit=limit)
    if as_json:
        render.emit_json([e.to_json() for e in entries])
        return
    if not entries:
        render.info(f"no commit changes {ref.pointer} yet (commit it with: git commit {ref.pointer})")
    for n, e in enumerate(entries):
        c, p = e.commit, e.pointer
        counts = " ".join(f"{sign}{'?' if v is None else v}" for sign, v in
                          (("+", e.added), ("-", e.removed), ("~", e.modified)))
        if e.error:
            summary = f"unreadable pointer: {e.error}"
        elif p is None:
            summary = f"package deleted ({counts})"
        else:
            summary = f"top {p.top_hash[:12]}  {p.files} files  {render.human_bytes(p.bytes)}  {counts}"
        subject = c.message.strip().splitlines()[0] if c.message.strip() else ""
        if oneline:
            render.line(f"{c.id[:10]} {e.date[:10]}  {summary}  {subject}")
            continue
        if n:
            render.line("")
        render.line(f"commit {c.id}")
        render.line(f"Author: {c.author} <{c.email}>")
        render.line(f"Date:   {e.date}")
        render.line("")
        for text in c.message.rstrip("\n").splitlines() or [""]:
            render.line(f"    {text}")
        render.line("")
        render.line(f"    {ref.path}: {summary}")
