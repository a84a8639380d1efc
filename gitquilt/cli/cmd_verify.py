"""``git quilt verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.errors import CheckFailed

if TYPE_CHECKING:
    from gitquilt.ops.verify import VerifyReport


@click.command("verify")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), help="Hashing threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--remote", "remote_name", help="Check a remote instead: does it hold every pinned package?")
@click.option("--read-data", is_flag=True, help="With --remote: download every fragment and re-hash it.")
@click.option("--all", "all_history", is_flag=True, help="With --remote: every version reachable from any ref.")
@click.option("--repair", is_flag=True, help="With --remote: upload missing or damaged objects again from the cache.")
def command(jobs: int | None, as_json: bool, remote_name: str | None, read_data: bool, all_history: bool,
            repair: bool) -> None:
    """Re-hash every fragment and re-validate every manifest in the cache.

    The stat cache is not trusted: every byte is read again. Damaged fragments
    and manifests are moved to quarantine/ in the cache and listed; the exit
    status is then 1 (fetch them again with `git quilt fetch`).

    With --remote, check instead that the remote holds the manifest and every
    fragment of each package the work tree pins (--all: every version in the
    history); --read-data downloads and re-hashes each fragment.

    \b
    Example:
      git quilt verify || git quilt fetch
      git quilt verify --remote origin --read-data
    """
    if remote_name is not None:
        from gitquilt.cli.cmd_verify_remote import verify_remote_command

        verify_remote_command(remote_name, read_data, all_history, jobs, as_json, repair)
        return
    if read_data or all_history or repair:
        from gitquilt.errors import UsageError

        raise UsageError("--read-data, --all and --repair go with --remote")
    from gitquilt.ops.verify import verify_store

    render.OUT.json = as_json
    ws = open_workspace()
    report = verify_store(ws.cache, progress=render.Bar(), jobs=jobs)
    show(report, as_json)


def show(report: VerifyReport, as_json: bool) -> None:
    """Print a report; exit 1 (one line on stderr) when anything is damaged."""
    if as_json:
        render.emit_json(report.to_json())
        if not report.ok:
            click.get_current_context().exit(1)
        return
    for d in report.damaged:
        where = f"; moved to {d.quarantined}" if d.quarantined else "; left in place"
        render.line(f"damaged {d.kind} {d.key}: {d.reason}{where}")
    checked = (f"{report.fragments} fragments ({render.human_bytes(report.bytes)}) and "
               f"{report.manifests} manifests in {report.where}")
    if report.ok:
        render.info(f"verified {checked}: all intact")
        return
    raise CheckFailed(
        f"{len(report.damaged)} damaged object(s) among {checked}; restore them with: git quilt fetch "
        "(or git quilt add PKG, where its files are intact)"
    )
