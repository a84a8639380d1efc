"""``git quilt gc``: delete cache objects that nothing references any more.

Live = every package version any ref, tag, stash, reflog entry, index or work-tree
pointer names (ops/reachable.py), in this repository and in those named with
``--repo`` (a cache shared through ``QUILT_CACHE_DIR`` serves several). Objects
younger than the grace period (default 14 days, as git's ``gc.pruneExpire``) are kept
whatever they are: a concurrent ``add`` may be about to name them.

One more rule keeps data safe when the live set is not fully known: if a live
package version's manifest is missing from the cache, its fragments cannot be told
apart, so a candidate fragment is deleted only where the default remote holds a copy
— never the only copy of something an unpushed commit may need.

Order: manifests first, then fragments (a crash in between leaves fragments without
a manifest, never a manifest without its fragments).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitquilt.errors import QuiltError, UsageError
from gitquilt.lock import FileLock
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.reachable import LiveSet, live_tops
from gitquilt.ops.workspace import Workspace
from gitquilt.store import Store

DAY = 86400.0
DEFAULT_GRACE_DAYS = 14.0


@dataclass
class GcReport:
    """What gc deleted (or, in a dry run, would delete) and what it kept."""

    where: str
    dry_run: bool
    live_versions: int = 0
    kept_fragments: int = 0
    kept_manifests: int = 0
    recent: int = 0  # unreferenced but younger than the grace period
    only_copies: int = 0  # unreferenced-looking, kept because no remote holds them
    fragments: list[str] = field(default_factory=list)  # deleted (or would be)
    manifests: list[str] = field(default_factory=list)
    bytes: int = 0
    uploads: list[str] = field(default_factory=list)  # unfinished multipart uploads aborted (remote gc)
    tmp_removed: int = 0
    warnings: list[str] = field(default_factory=list)
    packs: list[str] = field(default_factory=list)  # remote gc: pack ids deleted (dropped, rewritten, orphans)
    packs_rewritten: int = 0  # of those, packs whose live fragments moved to new packs
    packs_written: list[str] = field(default_factory=list)  # the new packs
    kept_packs: int = 0
    statcache_pruned: int = 0  # local gc: stat-cache rows of files gone or changed

    def to_json(self) -> dict[str, Any]:
        return {
            "where": self.where, "dry_run": self.dry_run, "live_versions": self.live_versions,
            "kept_fragments": self.kept_fragments, "kept_manifests": self.kept_manifests, "recent": self.recent,
            "only_copies": self.only_copies, "fragments": self.fragments, "manifests": self.manifests,
            "bytes": self.bytes, "uploads": self.uploads, "tmp_removed": self.tmp_removed,
            "warnings": self.warnings, "packs": self.packs, "packs_rewritten": self.packs_rewritten,
            "packs_written": self.packs_written, "kept_packs": self.kept_packs,
            "statcache_pruned": self.statcache_pruned,
        }


def collect_live(ws: Workspace, repos: list[Path], progress: Progress) -> LiveSet:
    """The live set of this repository plus ``repos``."""
    live = live_tops(ws.root)
    for path in repos:
        try:
            other = live_tops(path)
        except QuiltError as exc:
            raise UsageError(f"--repo {path}: {exc}") from None
        live.tops |= other.tops
        live.warnings += other.warnings
        live.sources += other.sources
    for w in live.warnings:
        progress.warn(w)
    return live


def _shared_cache(ws: Workspace) -> bool:
    """True when the cache lives outside this repository's git directory (it may be shared)."""
    try:
        ws.cache.root.resolve().relative_to(ws.git.common_dir.resolve())
        return False
    except ValueError:
        return True


def gc_cache(
    ws: Workspace, dry_run: bool = False, grace_days: float = DEFAULT_GRACE_DAYS, repos: list[Path] | None = None,
    all_repos: bool = False, progress: Progress | None = None, now: float | None = None,
) -> GcReport:
    """Delete unreferenced cache objects older than the grace period (see the module doc)."""
    progress = progress or NullProgress()
    repos = list(repos or [])
    if _shared_cache(ws) and not (repos or all_repos):
        raise UsageError(
            f"the cache at {ws.cache.root} is outside this repository and may be shared by other clones, whose "
            "data gc cannot see: name them with --repo PATH, or pass --all-repos if this is the only one"
        )
    if grace_days < 0:
        raise UsageError("--grace must be zero or more days")
    cache = ws.cache
    report = GcReport(str(cache.root), dry_run)
    cutoff = (now if now is not None else time.time()) - grace_days * DAY
    with FileLock(cache.root / "gc.lock", what=f"gc of the cache at {cache.root}"):
        live = collect_live(ws, repos, progress)
        report.live_versions = len(live.tops)
        report.warnings += live.warnings
        live_digests, unknown = _live_fragments(cache, live.tops)
        if unknown:
            report.warnings.append(
                f"{len(unknown)} live package version(s) have no manifest in the cache (first: {min(unknown)[:12]}); "
                "unreferenced-looking fragments are deleted only where the default remote holds them"
            )
        # manifests first
        for top in sorted(cache.iter_manifests()):
            if top in live.tops:
                report.kept_manifests += 1
            elif _mtime(cache.manifest_path(top)) > cutoff:
                report.recent += 1
                report.kept_manifests += 1
            else:
                report.manifests.append(top)
        candidates: dict[str, int] = {}
        for digest in cache.iter_objects():
            if digest in live_digests:
                report.kept_fragments += 1
                continue
            path = cache.object_path(digest)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if st.st_mtime > cutoff:
                report.recent += 1
                report.kept_fragments += 1
                continue
            candidates[digest] = st.st_size
        if unknown and candidates:
            safe = _held_by_default_remote(ws, candidates, progress, report)
            for digest in [d for d in candidates if d not in safe]:
                del candidates[digest]
                report.only_copies += 1
                report.kept_fragments += 1
        report.fragments = sorted(candidates)
        report.bytes = sum(candidates.values())
        if not dry_run:
            for top in report.manifests:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(cache.manifest_path(top))
                cache.drop_manifest_text(top)
            for digest in report.fragments:
                cache.delete(digest)
            report.tmp_removed = cache.clean_tmp()
            _prune_empty_dirs(cache)
            report.statcache_pruned = ws.statcache.prune(set(cache.iter_manifests()))
    return report


def _live_fragments(cache: Store, tops: set[str]) -> tuple[set[str], set[str]]:
    """(fragments the live manifests name, live top hashes whose manifest is not in the cache)."""
    digests: set[str] = set()
    unknown: set[str] = set()
    for top in tops:
        if not cache.has_manifest(top):
            unknown.add(top)
            continue
        try:
            digests |= cache.read_manifest(top).digests()
        except QuiltError:
            unknown.add(top)
    return digests, unknown


def _held_by_default_remote(ws: Workspace, candidates: dict[str, int], progress: Progress,
                            report: GcReport) -> set[str]:
    """The candidates the default remote holds with the right size (empty without a remote)."""
    from gitquilt.ops.transfer import open_workspace_remote
    from gitquilt.ops.transfer_plan import survey_fragments

    try:
        _cfg, remote = open_workspace_remote(ws, None, ws.config.jobs)
    except QuiltError as exc:
        report.warnings.append(f"no remote to check against ({exc}); keeping every candidate fragment")
        return set()
    try:
        inv = survey_fragments(remote, candidates, ws.config.jobs, progress.warn)
    except QuiltError as exc:
        report.warnings.append(f"cannot list {remote.url} ({exc}); keeping every candidate fragment")
        return set()
    finally:
        remote.close()
    return {d for d, size in inv.fragments.items() if candidates.get(d) == size}


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def _prune_empty_dirs(cache: Store) -> None:
    if not cache.objects.is_dir():
        return
    for sub in os.scandir(cache.objects):
        if sub.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.rmdir(sub.path)  # only succeeds when empty
