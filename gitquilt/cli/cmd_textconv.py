"""``git quilt textconv`` (run by git as ``diff.quilt.textconv``)."""

from __future__ import annotations

import click

from gitquilt.errors import QuiltError
from gitquilt.pointer import MAX_POINTER_BYTES


@click.command("textconv")
@click.argument("pointer_file", type=click.Path(dir_okay=False))
def command(pointer_file: str) -> None:
    """Print a pointer with its package's file list, for `git diff`.

    git runs this on each side of a changed *.quilt file (`git quilt init`
    sets diff.quilt.textconv), so `git diff` and `git log -p` show which files
    were added, removed or changed: one line per file, key, size and sha256
    prefix. Without the manifest in the cache only the pointer is shown; a file
    that is not a valid pointer is printed as it is.

    \b
    Example:
      git quilt textconv images.quilt
    """
    try:
        with open(pointer_file, "rb") as f:
            data = f.read(MAX_POINTER_BYTES + 1)
            if len(data) > MAX_POINTER_BYTES:  # not a pointer: show it all, as git would
                _raw(data)
                while chunk := f.read(1 << 20):
                    _raw(chunk)
                return
    except OSError as exc:
        raise QuiltError(f"{pointer_file}: cannot read: {exc.strerror or exc}") from None
    _raw(_convert(data))


def _convert(data: bytes) -> bytes:
    """The text to show; the raw bytes whenever anything goes wrong (never fail a diff)."""
    try:
        from gitquilt.ops.textconv import describe, parse_lenient

        pointer = parse_lenient(data)
        if pointer is None:
            return data
        try:
            from gitquilt.cli.main import open_workspace

            ws, why = open_workspace(), ""
        except QuiltError as exc:
            ws, why = None, f"not in a gitquilt repository ({exc})"
        return describe(pointer, ws, why).encode("utf-8")
    except Exception:  # noqa: BLE001 - a diff must show something, not a traceback
        return data


def _raw(data: bytes) -> None:
    click.echo(data, nl=False)

