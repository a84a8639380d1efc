"""``git quilt verify --remote``: rendering of the remote check (the option lives in cmd_verify)."""

from __future__ import annotations

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace
from gitquilt.errors import CheckFailed


def verify_remote_command(remote_name: str, read_data: bool, all_history: bool, jobs: int | None,
                          as_json: bool, repair: bool = False) -> None:
    """Check that a remote holds the pinned packages; exit 1 listing what is missing or damaged."""
    from gitquilt.cli.transfer_render import TransferBar
    from gitquilt.ops.tops import selected_versions, tops_of
    from gitquilt.ops.verify_remote import repair_remote, verify_remote

    render.OUT.json = as_json
    ws = open_workspace()
    bar = TransferBar()
    versions = selected_versions(ws, (), None, all_history, progress=bar)
    report = verify_remote(ws, tops_of(versions), remote_name, read_data=read_data, jobs=jobs, progress=bar)
    repaired = None
    if repair and not report.ok:
        repaired = repair_remote(ws, report, remote_name, jobs=jobs)
    if as_json:
        out = report.to_json()
        if repaired is not None:
            out["repaired"], out["unrepairable"] = repaired.repaired, repaired.unrepairable
        render.emit_json(out)
        if not report.ok and (repaired is None or repaired.unrepairable):
            click.get_current_context().exit(1)
        return
    for key in report.missing:
        render.line(f"missing {key}")
    for key, reason in report.damaged:
        render.line(f"damaged {key}: {reason}")
    checked = (f"{report.manifests} manifest(s) and {report.fragments} fragment(s) of {report.packages} "
               f"package version(s) on {report.remote}")
    if read_data:
        checked += f" ({render.human_bytes(report.bytes)} re-hashed)"
    if report.ok:
        render.info(f"verified {checked}: all present" + (" and intact" if read_data else ""))
        return
    if repaired is not None:
        for key in repaired.repaired:
            render.line(f"repaired {key} from the local cache")
        if not repaired.unrepairable:
            render.info(f"repaired all {len(repaired.repaired)} object(s) on {report.remote}")
            return
        raise CheckFailed(
            f"{len(repaired.unrepairable)} object(s) on {report.remote} could not be repaired: the local cache has "
            f"no intact copy (first: {repaired.unrepairable[0]}); repair from a clone that has them"
        )
    raise CheckFailed(
        f"{len(report.missing)} missing and {len(report.damaged)} damaged object(s) among {checked}; "
        "upload them again from a clone whose cache holds them: git quilt verify --remote NAME --repair"
    )
