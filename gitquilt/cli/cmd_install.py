"""``git quilt install``."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.hooks import InstallResult


@click.command("install")
def command() -> None:
    """Install gitquilt's git hooks, merge driver and diff textconv in this clone.

    Writes post-checkout, post-merge and pre-push shims into the hooks directory
    (core.hooksPath is honoured). A hook already there is kept as
    NAME.gitquilt-orig and still runs; `git quilt uninstall` puts it back.
    Sets merge.quilt.driver and diff.quilt.textconv in .git/config and adds
    `*.quilt merge=quilt` to .gitattributes. Running it again changes nothing.
    Cloning never installs anything: run this once per clone.

    \b
    Example:
      git clone URL repo && cd repo && git quilt install && git quilt pull
    """
    from gitquilt.hooks import install

    report(install(open_workspace()))


def report(r: InstallResult) -> None:
    """Print what install changed (shared with `git quilt init --install`)."""
    for name in r.installed:
        render.info(f"installed hook {name}")
    for name in r.chained:
        render.info(f"  kept the existing {name} hook as {name}.gitquilt-orig; it still runs")
    for name in r.updated:
        render.info(f"updated hook {name}")
    for key in r.config:
        render.info(f"set git config {key}")
    for path in r.files:
        render.info(f"updated {path} (commit it so that other clones merge pointers too)")
    changed = r.installed or r.updated or r.config or r.files
    render.info(f"gitquilt hooks are installed in {r.hooks_dir}" + ("" if changed else " (nothing to change)"))
