"""``git quilt uninstall``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("uninstall")
def command() -> None:
    """Remove gitquilt's hooks, merge driver and textconv from this clone.

    Hooks that `git quilt install` kept as NAME.gitquilt-orig are put back
    byte for byte. .gitattributes (tracked, shared) is left as it is.

    \b
    Example:
      git quilt uninstall
    """
    from gitquilt.hooks import uninstall

    ws = open_workspace()
    r = uninstall(ws)
    for name in r.removed:
        render.info(f"removed hook {name}")
    for name in r.restored:
        render.info(f"restored the original {name} hook")
    for name in r.kept:
        render.warn(f"{r.hooks_dir / name} is not gitquilt's; left as it is")
    for key in r.config:
        render.info(f"unset git config {key}")
    if not (r.removed or r.restored or r.config):
        render.info("gitquilt was not installed here (nothing to change)")
