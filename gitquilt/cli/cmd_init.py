"""``git quilt init``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("init")
def command() -> None:
    """Set this git repository up for gitquilt.

    Writes .gitquilt.toml and .gitattributes (both staged) and sets
    diff.quilt.textconv so that `git diff` shows which files of a package changed.
    Running it again changes nothing.

    \b
    Example:
      git init && git quilt init
    """
    from gitquilt.ops.init import init

    ws = open_workspace()
    result = init(ws)
    for name in result.created:
        render.info(f"created {name}")
    for name in result.updated:
        render.info(f"updated {name}")
    render.info(f"gitquilt is set up in {ws.root} (cache: {ws.cache.root}); .gitquilt.toml and .gitattributes are staged")
