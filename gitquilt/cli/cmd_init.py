"""``git quilt init``."""

from __future__ import annotations

import sys

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("init")
@click.option("--install/--no-install", "install", default=None,
              help="Also install the git hooks and merge driver (git quilt install). "
                   "Without either flag, init asks when run in a terminal and never otherwise.")
def command(install: bool | None) -> None:
    """Set this git repository up for gitquilt.

    Writes .gitquilt.toml and .gitattributes (both staged) and sets
    diff.quilt.textconv so that `git diff` shows which files of a package changed.
    Running it again changes nothing. With --install it also runs
    `git quilt install` (hooks, merge driver).

    \b
    Example:
      git init && git quilt init --install
    """
    from gitquilt.ops.init import init

    ws = open_workspace()
    result = init(ws)
    for name in result.created:
        render.info(f"created {name}")
    for name in result.updated:
        render.info(f"updated {name}")
    render.info(f"gitquilt is set up in {ws.root} (cache: {ws.cache.root}); .gitquilt.toml and .gitattributes are staged")
    if install is None and sys.stdin.isatty() and sys.stdout.isatty():
        install = click.confirm(
            "Install gitquilt's git hooks here (hydrate data on checkout, upload it before push)?", default=True
        )
    if install:
        from gitquilt.cli.cmd_install import report
        from gitquilt.hooks import install as install_hooks

        installed = install_hooks(ws)
        if installed.files:
            ws.git.stage(installed.files)  # init stages .gitattributes; keep it so
        report(installed)
    elif install is None:
        render.info("to hydrate data on checkout and upload it on push, run: git quilt install")
