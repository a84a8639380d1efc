"""``git quilt gc``."""

from __future__ import annotations

from pathlib import Path

import click

from gitquilt.cli import render
from gitquilt.cli.main import open_workspace


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted (the default with --remote).")
@click.option("--remote", "remote_name", help="Collect garbage on this remote instead of the local cache.")
@click.option("--delete", is_flag=True, help="With --remote: really delete (without it, a dry run).")
@click.option("--grace", "grace_days", type=float, default=14.0, show_default=True,
              help="Keep unreferenced objects younger than this many days (0 prunes now).")
@click.option("--repo", "repos", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another repository using the same cache or remote: its references are kept too (repeatable).")
@click.option("--all-repos", is_flag=True,
              help="Declare that this repository and the --repo ones are all that use the cache or remote.")
@click.option("--repack-threshold", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="With --remote: rewrite a pack when more than this fraction of its bytes is dead (1: never).")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Parallel requests (remote gc).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def command(dry_run: bool, remote_name: str | None, delete: bool, grace_days: float, repos: tuple[Path, ...],
            all_repos: bool, repack_threshold: float, jobs: int | None, as_json: bool) -> None:
    """Delete data that no ref, tag, stash, reflog entry, index or work tree references.

    Local cache by default. Objects younger than --grace days are kept (a
    concurrent add or push may be about to name them). With --remote, a dry run
    unless --delete; a remote other clones push to is refused unless they are
    named with --repo or --all-repos says this repository's refs cover them
    (run `git fetch` first). See docs/remotes.md.

    \b
    Example:
      git quilt gc --dry-run
      git quilt gc --remote origin --all-repos            # what would go
      git quilt gc --remote origin --all-repos --delete
    """
    render.OUT.json = as_json
    ws = open_workspace()
    bar = render.Bar()
    if remote_name is not None:
        from gitquilt.ops.gc_remote import gc_remote

        report = gc_remote(ws, remote_name, delete=delete and not dry_run, grace_days=grace_days,
                           repos=list(repos), all_repos=all_repos, jobs=jobs, progress=bar,
                           repack_threshold=repack_threshold)
    else:
        if delete:
            from gitquilt.errors import UsageError

            raise UsageError("--delete goes with --remote (the local gc deletes unless --dry-run)")
        from gitquilt.ops.gc import gc_cache

        report = gc_cache(ws, dry_run=dry_run, grace_days=grace_days, repos=list(repos), all_repos=all_repos,
                          progress=bar)
    if as_json:
        render.emit_json(report.to_json())
        return
    verb = "would delete" if report.dry_run else "deleted"
    for top in report.manifests:
        render.info(f"{verb} manifest {top}")
    for digest in report.fragments[:20] if report.dry_run else []:
        render.info(f"{verb} fragment {digest}")
    if report.dry_run and len(report.fragments) > 20:
        render.info(f"… and {len(report.fragments) - 20} more fragments")
    for key in report.uploads:
        render.info(f"{verb} unfinished upload of {key}")
    if report.packs or report.packs_written:
        rewrote = f", rewriting {report.packs_rewritten} into {len(report.packs_written)} new pack(s)" \
            if report.packs_written else (f", {report.packs_rewritten} of them rewritten" if report.packs_rewritten
                                          else "")
        render.info(f"{verb} {len(report.packs)} pack(s){rewrote}; kept {report.kept_packs}")
    render.info(
        f"{report.where}: {verb} {len(report.fragments)} fragment(s) ({render.human_bytes(report.bytes)}) and "
        f"{len(report.manifests)} manifest(s); kept {report.kept_fragments} fragment(s) and "
        f"{report.kept_manifests} manifest(s) of {report.live_versions} live package version(s)"
        + (f", {report.recent} younger than {grace_days:g} days" if report.recent else "")
        + (f", {report.only_copies} kept as possibly the only copy" if report.only_copies else "")
    )
    if report.statcache_pruned:
        render.info(f"forgot {report.statcache_pruned} stat-cache entries of files that are gone or changed")
    if report.dry_run and remote_name is not None:
        render.info("this was a dry run: add --delete to delete")
