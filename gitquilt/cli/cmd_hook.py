"""``git quilt hook NAME ARGS…``: what the shims in hooks/ run (git calls them)."""

from __future__ import annotations

import sys

import click

from gitquilt.cli import render

NAMES = ("post-checkout", "post-merge", "pre-push")


@click.command("hook", context_settings={"ignore_unknown_options": True})
@click.argument("name", type=click.Choice(NAMES))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(name: str, args: tuple[str, ...]) -> None:
    """Run gitquilt's part of a git hook (installed by `git quilt install`).

    \b
    post-checkout OLD NEW FLAG  hydrate packages whose pointers changed
    post-merge SQUASH           the same after a merge or pull
    pre-push REMOTE URL         upload the data of the pushed commits first
                                (ref lines on stdin; a failure stops the push)

    \b
    Example:
      git quilt hook post-checkout HEAD@{1} HEAD 1
    """
    from gitquilt import hooks

    bar = render.Bar()
    if name == "pre-push":
        outcome = hooks.pre_push(list(args), sys.stdin.buffer.read(), bar)
    elif name == "post-merge":
        outcome = hooks.post_merge(list(args), bar)
    else:
        outcome = hooks.post_checkout(list(args), bar)
    for message in outcome.info:
        render.info(message)
    for message in outcome.warnings:
        render.warn(message)
    for message in outcome.errors:
        render.error(message)
    if outcome.exit_code:
        raise SystemExit(outcome.exit_code)
