"""``git quilt gc --remote R``: delete remote objects that no kept repository references.

A remote is often shared: several clones, CI runners, even several repositories push
to one bucket. gc can only see the references of the repositories it is shown, so:

* every push leaves ``repos/<clone id>.json`` on the remote; if markers of clones that
  were not named are there, gc refuses unless ``--all-repos`` declares that this
  repository and the ``--repo PATH`` ones are all that matter (after ``git fetch``,
  remote-tracking refs cover what teammates pushed to the git remote);
* it is a dry run unless ``--delete``: it prints what it would delete;
* objects younger than the grace period (14 days) are kept, so a concurrent push's
  fresh uploads survive;
* while deleting it holds a lease, ``locks/gc.json``: a push that would upload waits
  for it to go (or for it to expire), and gc aborts if any clone pushed after the
  lease was taken — a push may have skipped an old object gc meant to delete.

Packs (ops/gc_packs.py): a pack with no live fragment is deleted; one whose dead bytes
exceed ``repack_threshold`` is rewritten — its live fragments go into new packs first.

Order: new packs (each before its index), then manifests, then loose fragments, then
old packs (each index before its pack), then unfinished multipart uploads. A kill at
any point leaves every live fragment on the remote, in an indexed pack or loose.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import time
import uuid
from pathlib import Path

from gitquilt.errors import QuiltError, RemoteError, UsageError
from gitquilt.manifest_io import read_manifest_bytes
from gitquilt.ops.gc import DAY, DEFAULT_GRACE_DAYS, GcReport, collect_live
from gitquilt.ops.gc_packs import PackGc, carry, delete_packs, plan_pack_gc
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.remote_lease import LEASE_KEY, LEASE_TTL, check_lease, clone_id, read_markers
from gitquilt.ops.remote_packs import survey_packs
from gitquilt.ops.transfer import MAX_MANIFEST_BYTES, open_workspace_remote, pack_settings
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, list_with_retries
from gitquilt.ops.workspace import Workspace
from gitquilt.packs import DEFAULT_REPACK_THRESHOLD
from gitquilt.remotes import ObjectInfo, ObjectMissing, Remote, manifest_key, parse_key


def gc_remote(
    ws: Workspace, remote: str | None = None, delete: bool = False, grace_days: float = DEFAULT_GRACE_DAYS,
    repos: list[Path] | None = None, all_repos: bool = False, jobs: int | None = None,
    progress: Progress | None = None, backend: Remote | None = None, policy: RetryPolicy | None = None,
    now: float | None = None, repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
) -> GcReport:
    """Find (and with ``delete``, remove) unreferenced objects on a remote; see the module doc.

    ``repack_threshold``: rewrite a pack when more than this fraction of its bytes is
    dead (1 never rewrites; packs with no live fragment are always dropped).
    """
    progress = progress or NullProgress()
    policy = policy or RetryPolicy()
    repos = list(repos or [])
    if grace_days < 0:
        raise UsageError("--grace must be zero or more days")
    if not 0.0 <= repack_threshold <= 1.0:
        raise UsageError(f"--repack-threshold must be between 0 and 1, not {repack_threshold}")
    n_jobs = max(1, jobs or ws.config.jobs)
    own = backend is None
    target = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    report = GcReport(target.url, dry_run=not delete)
    started = now if now is not None else time.time()
    cutoff = started - grace_days * DAY
    try:
        known = {i for i in [clone_id(ws.root), *(clone_id(p) for p in repos)] if i}
        markers = read_markers(target, policy)
        strangers = [m for m in markers if m.id not in known]
        if strangers and not all_repos:
            shown = "; ".join(m.describe() for m in strangers[:5])
            raise UsageError(
                f"{target.url} is shared: {len(strangers)} other clone(s) have pushed to it ({shown}); gc would "
                "delete what only they reference. Name them with --repo PATH (their refs are kept too), or pass "
                "--all-repos to declare that this repository and the --repo ones are all that use it "
                "(run git fetch first: remote-tracking refs keep what was pushed to the git remote)"
            )
        live = collect_live(ws, repos, progress)
        report.live_versions = len(live.tops)
        report.warnings += live.warnings
        lease = _take_lease(target, started) if delete else None
        snapshot = {m.id: m.mtime for m in read_markers(target, policy)} if delete else {}
        try:
            live_digests, unknown = _live_fragments(ws, target, live.tops, n_jobs, policy, report)
            manifests = list_with_retries(target, "manifests/", policy)
            objects = list_with_retries(target, "objects/sha256/", policy)
            packs = survey_packs(target, ws.cache.root, n_jobs, policy, report.warnings.append)
            for info in manifests:
                parsed = parse_key(info.key)
                if parsed is None:
                    continue
                if parsed[1] in live.tops:
                    report.kept_manifests += 1
                elif _recent(info, cutoff):
                    report.recent += 1
                    report.kept_manifests += 1
                else:
                    report.manifests.append(parsed[1])
            doomed: list[ObjectInfo] = []
            for info in objects:
                parsed = parse_key(info.key)
                if parsed is None:
                    continue
                if parsed[1] in live_digests:
                    report.kept_fragments += 1
                elif _recent(info, cutoff):
                    report.recent += 1
                    report.kept_fragments += 1
                elif unknown:
                    report.only_copies += 1  # cannot tell: a live manifest is nowhere to be read
                    report.kept_fragments += 1
                else:
                    doomed.append(info)
            doomed_digests = {parse_key(i.key)[1] for i in doomed}  # type: ignore[index]
            loose_live = {d for i in objects if (p := parse_key(i.key)) is not None and (d := p[1]) in live_digests}
            pack_gc = plan_pack_gc(packs, live_digests, loose_live, cutoff, hold_all=bool(unknown),
                                   threshold=repack_threshold)
            report.recent += pack_gc.recent
            report.fragments = sorted(doomed_digests | pack_gc.dead)
            report.bytes = sum(i.size for i in doomed) + pack_gc.freed
            uploads = [u for u in target.list_uploads() if u.started is None or u.started < cutoff]
            report.uploads = sorted(u.key for u in uploads)
            _report_packs(report, pack_gc)
            if delete:
                _check_no_push_since(target, policy, snapshot)
                carry(target, packs, pack_gc, ws.cache.root, ws.cache.ensure().tmp, policy,
                      pack_settings(ws, remote).target_size, report.warnings.append)
                _report_packs(report, pack_gc)
                _check_no_push_since(target, policy, snapshot)
                _delete(target, [manifest_key(t) for t in report.manifests], n_jobs, policy)
                target.flush()
                _delete(target, [i.key for i in doomed], n_jobs, policy)
                target.flush()
                delete_packs(target, pack_gc, ws.cache.root, n_jobs, policy)
                for u in uploads:
                    with contextlib.suppress(QuiltError):
                        target.abort_upload(u)
                report.tmp_removed = _clean_remote_tmp(target, started)
        finally:
            if lease is not None:
                with contextlib.suppress(QuiltError):
                    target.delete(LEASE_KEY)
    finally:
        if own:
            target.close()
    return report


def _report_packs(report: GcReport, pack_gc: PackGc) -> None:
    report.packs = pack_gc.deleted
    report.packs_rewritten = len(pack_gc.plan.rewrite)
    report.packs_written = list(pack_gc.written)
    report.kept_packs = len(pack_gc.plan.keep)


def _recent(info: ObjectInfo, cutoff: float) -> bool:
    return info.mtime is None or info.mtime > cutoff


def _take_lease(target: Remote, started: float) -> str:
    check_lease(target, started)
    lease = json.dumps({"id": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                        "started": started}).encode()
    target.put(LEASE_KEY, io.BytesIO(lease), len(lease), overwrite=True)
    target.flush()
    return LEASE_KEY


def _check_no_push_since(target: Remote, policy: RetryPolicy, snapshot: dict[str, float | None]) -> None:
    """Abort when a clone pushed after the lease was taken: it may rely on an object about to go.

    Marker times are compared with marker times (the server's clock), never with ours.
    """
    for m in read_markers(target, policy):
        if m.id not in snapshot or snapshot[m.id] != m.mtime:
            raise RemoteError(
                f"{m.describe()} pushed to {target.url} while gc was planning; nothing was deleted. Run gc again"
            )


def _live_fragments(ws: Workspace, target: Remote, tops: set[str], jobs: int, policy: RetryPolicy,
                    report: GcReport) -> tuple[set[str], set[str]]:
    """Fragments the live manifests name (read from the cache, else from the remote)."""
    digests: set[str] = set()
    unknown: set[str] = set()
    need_remote = []
    for top in tops:
        if ws.cache.has_manifest(top):
            try:
                digests |= ws.cache.read_manifest(top).digests()
                continue
            except QuiltError:
                pass
        need_remote.append(top)

    def one(top: str) -> tuple[str, set[str] | None]:
        key = manifest_key(top)
        try:
            data = call_with_retries(lambda: _read(target, key), policy)
            return top, read_manifest_bytes(data, top, f"{key} on {target.url}").digests()
        except ObjectMissing:
            return top, None

    for top, found in parallel_map(one, need_remote, min(jobs, max(1, len(need_remote)))):
        if found is None:
            unknown.add(top)
        else:
            digests |= found
    if unknown:
        report.warnings.append(
            f"{len(unknown)} live package version(s) have a manifest neither in the cache nor on the remote "
            f"(first: {min(unknown)[:12]}); no fragment is deleted"
        )
    return digests, unknown


def _read(target: Remote, key: str) -> bytes:
    with contextlib.closing(target.get(key)) as body:
        return body.read(MAX_MANIFEST_BYTES)  # type: ignore[no-any-return]


def _delete(target: Remote, keys: list[str], jobs: int, policy: RetryPolicy) -> None:
    if not keys:
        return
    for _ in parallel_map(lambda k: call_with_retries(lambda: target.delete(k), policy), keys,
                          min(jobs, len(keys))):
        pass


def _clean_remote_tmp(target: Remote, now: float) -> int:
    """Temporary files a killed push left in a directory remote (by age only: the remote may be
    shared by other hosts, whose process ids mean nothing here)."""
    root = getattr(target, "root", None)
    if root is None:
        return 0
    tmp = Path(root) / "tmp"
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(tmp):
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > LEASE_TTL:
                    os.unlink(entry.path)
                    removed += 1
    return removed
