"""Push and fetch package versions between the cache and a remote (public API).

``push_tops`` uploads the fragments and manifests of some package versions (top
hashes); ``fetch_tops`` downloads them. Both plan first (ops/transfer_plan.py: what the
remote holds is learned by listing) and then execute (ops/transfer_exec.py: a thread
pool with retries). Order is what makes interruption safe: fragments go up before
the manifest that names them (and a directory remote is flushed in between), so a
remote never holds a manifest whose fragments are missing; a rerun after ``kill -9``
or Ctrl-C lists the remote again and sends only what had not arrived. Every fetched
object is verified before it enters the cache.
"""

from __future__ import annotations

import contextlib
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gitquilt.config import RemoteConfig
from gitquilt.errors import ConfigError, IntegrityError, NotFound, QuiltError
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.transfer_exec import (
    DOWNLOAD_MEMORY,
    Executor,
    RetryPolicy,
    Tally,
    TransferFailed,
    open_download,
    raise_failures,
)
from gitquilt.ops.transfer_plan import plan_fetch, plan_fetch_digests, plan_push
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import Remote, fragment_key, manifest_key, open_remote
from gitquilt.remotes.streams import ByteBudget, CountingReader

#: A manifest larger than this from a remote is refused unread (a million entries is ~60 MB).
MAX_MANIFEST_BYTES = 1 << 30
__all__ = [
    "TransferFailed",
    "TransferSummary",
    "fetch_fragments",
    "fetch_manifests",
    "fetch_tops",
    "open_workspace_remote",
    "push_tops",
    "remote_config",
]


@dataclass
class TransferSummary:
    """What a push or fetch did (``--json`` prints :meth:`to_json`)."""

    direction: str
    remote: str
    packages: int = 0
    fragments: int = 0  # fragments transferred
    manifests: int = 0
    bytes: int = 0
    skipped: int = 0  # fragments already where they had to go
    skipped_bytes: int = 0
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    strategy: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return self.fragments

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction, "remote": self.remote, "packages": self.packages,
            "files": self.fragments, "manifests": self.manifests, "bytes": self.bytes,
            "skipped": self.skipped, "skipped_bytes": self.skipped_bytes,
            "seconds": round(self.seconds, 3), "requests": self.requests, "retries": self.retries,
            "warnings": self.warnings,
        }


# -- remotes of a workspace -----------------------------------------------------------------
def remote_config(ws: Workspace, name: str | None = None) -> RemoteConfig:
    """The named remote, or the default one (the only one, when there is exactly one)."""
    remotes = ws.config.remotes
    if name is None:
        name = ws.config.default_remote
        if name is None:
            if len(remotes) == 1:
                return next(iter(remotes.values()))
            if not remotes:
                raise ConfigError("no remote is configured; add one: git quilt remote add origin s3://bucket/prefix")
            raise ConfigError(
                f"several remotes ({', '.join(sorted(remotes))}) and no default; "
                "name one with --remote, or: git quilt remote default NAME"
            )
    cfg = remotes.get(name)
    if cfg is None:
        known = ", ".join(sorted(remotes)) or "none"
        raise NotFound(f"no remote named {name!r} (configured: {known}); add it: git quilt remote add {name} URL")
    return cfg


def open_workspace_remote(ws: Workspace, name: str | None, jobs: int) -> tuple[RemoteConfig, Remote]:
    """Open a workspace's remote (relative directory paths are relative to the work tree)."""
    cfg = remote_config(ws, name)
    return cfg, open_remote(cfg, jobs=jobs, base_dir=ws.root)


def _jobs(ws: Workspace, jobs: int | None) -> int:
    return max(1, min(jobs or ws.config.jobs, 1024))


# -- push --------------------------------------------------------------------------------------
def push_tops(
    ws: Workspace, top_hashes: list[str], remote: str | None = None, jobs: int | None = None,
    progress: Progress | None = None, policy: RetryPolicy | None = None, backend: Remote | None = None,
) -> TransferSummary:
    """Upload the fragments and then the manifests of these package versions.

    Raises MissingFragments (listing the keys) when the local cache lacks something a
    version needs, and RemoteError when the remote refuses or keeps failing.
    """
    progress = progress or NullProgress()
    n_jobs = _jobs(ws, jobs)
    started = time.monotonic()
    own = backend is None
    target = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    summary = TransferSummary("push", target.url, packages=len(set(top_hashes)))
    requests0 = target.request_count()

    def warn(message: str) -> None:
        summary.warnings.append(message)
        progress.warn(message)

    try:
        plan = plan_push(ws.cache, list(top_hashes), target, n_jobs, warn, policy)
        summary.strategy = plan.inventory.strategy
        if plan.fragments or plan.manifests:
            from gitquilt.ops.remote_lease import check_lease, mark_clone

            check_lease(target)  # a gc --remote deleting now could take what the plan counts on
            mark_clone(ws.root, ws.git, target)
        summary.skipped = plan.present_fragments
        summary.skipped_bytes = plan.present_bytes
        tally = Tally()
        executor = Executor(n_jobs, progress, policy)
        cache = ws.cache

        def upload(digest: str, size: int, on_bytes: Any) -> None:
            with cache.open(digest) as f:
                target.put(fragment_key(digest), CountingReader(f, on_bytes), size, digest,
                           overwrite=digest in plan.repair)  # type: ignore[arg-type]

        if plan.fragments:
            progress.start(plan.bytes, "B", f"push to {target.url}")
            try:
                executor.run(plan.fragments, upload, fragment_key, tally)
            finally:
                progress.close()
        target.flush()  # every fragment in place before any manifest names it
        failed = {k for k, _ in tally.failures}
        ready = [t for t in plan.manifests if not any(fragment_key(d) in failed for d in plan.needs.get(t, ()))]
        mtally = Tally()

        def upload_manifest(top: str, _size: int, on_bytes: Any) -> None:
            data = cache.manifest_bytes(top)
            target.put(manifest_key(top), io.BytesIO(data), len(data))

        executor.run([(t, 0) for t in ready], upload_manifest, manifest_key, mtally)
        target.flush()
        summary.fragments, summary.bytes, summary.retries = tally.files, tally.bytes, tally.retries + mtally.retries
        summary.manifests = mtally.files
        tally.failures += mtally.failures
        raise_failures(tally, "uploaded to", target.url)
    finally:
        summary.requests = target.request_count() - requests0
        summary.seconds = time.monotonic() - started
        if own:
            target.close()
    return summary


# -- fetch -------------------------------------------------------------------------------------
def fetch_tops(
    ws: Workspace, top_hashes: list[str], remote: str | None = None, jobs: int | None = None,
    progress: Progress | None = None, policy: RetryPolicy | None = None, backend: Remote | None = None,
) -> TransferSummary:
    """Download the manifests and fragments of these package versions into the cache."""
    progress = progress or NullProgress()
    n_jobs = _jobs(ws, jobs)
    started = time.monotonic()
    own = backend is None
    source = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    summary = TransferSummary("fetch", source.url, packages=len(set(top_hashes)))
    requests0 = source.request_count()
    try:
        ws.cache.clean_tmp()  # what a killed fetch left behind
        summary.manifests = _fetch_manifests(ws, source, list(top_hashes), n_jobs, policy, summary)
        plan = plan_fetch(ws.cache, list(top_hashes))
        summary.skipped, summary.skipped_bytes = plan.present_fragments, plan.present_bytes
        _fetch_fragments(ws, source, plan.fragments, n_jobs, progress, policy, summary)
    finally:
        summary.requests = source.request_count() - requests0
        summary.seconds = time.monotonic() - started
        if own:
            source.close()
    return summary


def fetch_manifests(ws: Workspace, tops: list[str], remote: str | None = None, jobs: int | None = None,
                    backend: Remote | None = None) -> TransferSummary:
    """Download only the manifests of these package versions (those the cache lacks)."""
    n_jobs = _jobs(ws, jobs)
    started = time.monotonic()
    own = backend is None
    source = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    summary = TransferSummary("fetch", source.url, packages=len(set(tops)))
    requests0 = source.request_count()
    try:
        summary.manifests = _fetch_manifests(ws, source, tops, n_jobs, None, summary)
    finally:
        summary.requests = source.request_count() - requests0
        summary.seconds = time.monotonic() - started
        if own:
            source.close()
    return summary


def fetch_fragments(
    ws: Workspace, sizes: dict[str, int | None], remote: str | None = None, jobs: int | None = None,
    progress: Progress | None = None, policy: RetryPolicy | None = None, backend: Remote | None = None,
) -> TransferSummary:
    """Download these fragments (digest -> size, None when unknown) that the cache lacks."""
    progress = progress or NullProgress()
    n_jobs = _jobs(ws, jobs)
    started = time.monotonic()
    own = backend is None
    source = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    summary = TransferSummary("fetch", source.url)
    requests0 = source.request_count()
    try:
        plan = plan_fetch_digests(ws.cache, {d: (-1 if s is None else s) for d, s in sizes.items()})
        summary.skipped, summary.skipped_bytes = plan.present_fragments, plan.present_bytes
        _fetch_fragments(ws, source, plan.fragments, n_jobs, progress, policy, summary)
    finally:
        summary.requests = source.request_count() - requests0
        summary.seconds = time.monotonic() - started
        if own:
            source.close()
    return summary


def _fetch_manifests(ws: Workspace, source: Remote, tops: list[str], jobs: int, policy: RetryPolicy | None,
                     summary: TransferSummary) -> int:
    """Fetch the manifests the cache lacks; each is decoded and checked against its name first."""
    cache = ws.cache
    wanted = sorted({t for t in tops if not cache.has_manifest(t)})
    if not wanted:
        return 0
    tally = Tally()

    def one(top: str, _size: int, on_bytes: Any) -> None:
        key = manifest_key(top)
        with contextlib.closing(source.get(key)) as body:
            data = body.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{key} from {source.url} is larger than {MAX_MANIFEST_BYTES} bytes; refusing it")
        # decoded, validated and checked against its name before it is cached
        cache.put_manifest_bytes(data, top, where=f"{key} from {source.url}:")
        on_bytes(len(data))

    Executor(jobs, NullProgress(), policy).run([(t, 0) for t in wanted], one, manifest_key, tally)
    missing = [k for k, reason in tally.failures if "is not on" in reason]
    if missing:
        raise NotFound(
            f"{len(missing)} manifest(s) are not on {source.url}: {', '.join(missing[:5])}; "
            "push them from the repository that made them (git quilt push)"
        )
    raise_failures(tally, "fetched from", source.url)
    summary.bytes += tally.bytes
    return tally.files


def _fetch_fragments(ws: Workspace, source: Remote, items: list[tuple[str, int]], jobs: int, progress: Progress,
                     policy: RetryPolicy | None, summary: TransferSummary) -> None:
    if not items:
        return
    cache = ws.cache
    tally = Tally()
    ranges = ThreadPoolExecutor(jobs, thread_name_prefix="gitquilt-range")
    budget = ByteBudget(DOWNLOAD_MEMORY)
    total = sum(max(s, 0) for _, s in items)
    progress.start(total, "B", f"fetch from {source.url}")
    try:
        with cache.batch() as batch:

            def download(digest: str, size: int, on_bytes: Any) -> None:
                key = fragment_key(digest)
                known = None if size < 0 else size
                with contextlib.closing(open_download(source, key, known, ranges, budget)) as body:
                    reader = CountingReader(body, on_bytes, network=f"{key} from {source.url}")
                    batch.put_stream(reader, digest, known, where=f"{key} from {source.url}")  # type: ignore[arg-type]

            Executor(jobs, progress, policy).run(items, download, fragment_key, tally)
    finally:
        progress.close()
        ranges.shutdown(wait=True, cancel_futures=True)
    summary.fragments += tally.files
    summary.bytes += tally.bytes
    summary.retries += tally.retries
    raise_failures(tally, "fetched from", source.url)


def fetch_digest_sizes(ws: Workspace, digests: list[str], tops: list[str]) -> dict[str, int | None]:
    """Sizes of ``digests`` as the cached manifests of ``tops`` record them (None if unknown)."""
    wanted = set(digests)
    sizes: dict[str, int | None] = dict.fromkeys(wanted)
    for top in tops:
        if not wanted or not ws.cache.has_manifest(top):
            continue
        try:
            manifest = ws.cache.read_manifest(top)
        except QuiltError:
            continue
        for i in range(len(manifest)):
            d = manifest.sha256(i)
            if d in wanted:
                sizes[d] = manifest.sizes[i]
    return sizes

