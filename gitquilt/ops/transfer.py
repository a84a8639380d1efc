"""Push and fetch package versions between the cache and a remote (public API).

``push_tops`` uploads the fragments and manifests of some package versions (top
hashes); ``fetch_tops`` downloads them; ``fetch_digests`` downloads any set of
fragments (the Python API's on-demand reads). All plan first (ops/transfer_plan.py:
what the remote holds is learned from its pack indexes and by listing) and then
execute (ops/transfer_packs.py: small fragments in packs; ops/transfer_exec.py: a
thread pool with retries for loose objects). Order is what makes interruption safe:
a pack goes up before its index, fragments (packed or loose) before the manifest that
names them (and a directory remote is flushed in between), so a remote never holds a
manifest whose fragments are missing, nor an index whose pack is; a rerun after
``kill -9`` or Ctrl-C looks at the remote again and sends only what had not arrived.
Every fetched object is verified before it enters the cache.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gitquilt.config import RemoteConfig
from gitquilt.errors import ConfigError, IntegrityError, NotFound, QuiltError
from gitquilt.ops.checkout import EARLY_MIN
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.remote_packs import PackSettings, RemotePacks, forget_survey, recent_survey, survey_packs
from gitquilt.ops.transfer_exec import (
    DOWNLOAD_MEMORY,
    ChunkReader,
    DamagedOnRemote,
    Executor,
    RetryPolicy,
    Tally,
    TransferFailed,
    call_with_retries,
    open_download,
    raise_failures,
)
from gitquilt.ops.transfer_packs import PackFetch, fetch_packed, make_plan, upload_packs
from gitquilt.ops.transfer_plan import plan_fetch, plan_fetch_digests, plan_push
from gitquilt.ops.workspace import Workspace
from gitquilt.packs import parse_pack_key
from gitquilt.remotes import Remote, fragment_key, manifest_key, open_remote, parse_key
from gitquilt.remotes.streams import ByteBudget, CountingReader
from gitquilt.store import WriteBatch

#: A manifest larger than this from a remote is refused unread (a million entries is ~60 MB).
MAX_MANIFEST_BYTES = 1 << 30
#: Loose fragments at least this large are made durable one by one, by the worker that
#: fetched them, and reported to ``on_stored``: the size from which checkout writes a
#: file early (the two must agree, or a file checkout waits for is never reported).
OWN_BATCH_MIN = EARLY_MIN
__all__ = [
    "DamagedOnRemote",
    "PackSettings",
    "PullFetcher",
    "TransferFailed",
    "TransferSummary",
    "fetch_digests",
    "fetch_fragments",
    "fetch_manifests",
    "fetch_tops",
    "open_workspace_remote",
    "pack_settings",
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
    packs: int = 0  # packs uploaded, or read from
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
            "packs": self.packs, "warnings": self.warnings,
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


def pack_settings(ws: Workspace, name: str | None = None) -> PackSettings:
    """The pack settings of a workspace's remote (``pack_threshold``, ``pack_size``; defaults
    when the remote is not configured, e.g. a backend handed in by a test)."""
    try:
        cfg = remote_config(ws, name)
    except (ConfigError, NotFound):
        return PackSettings()
    return PackSettings.from_options(cfg.options, cfg.name)


# -- push --------------------------------------------------------------------------------------
def push_tops(
    ws: Workspace, top_hashes: list[str], remote: str | None = None, jobs: int | None = None,
    progress: Progress | None = None, policy: RetryPolicy | None = None, backend: Remote | None = None,
    packing: PackSettings | None = None,
) -> TransferSummary:
    """Upload the fragments (small ones in packs) and then the manifests of these package versions.

    ``packing`` overrides the remote's pack settings (``LOOSE`` sends every fragment
    loose). Raises MissingFragments (listing the keys) when the local cache lacks
    something a version needs, and RemoteError when the remote refuses or keeps failing.
    """
    progress = progress or NullProgress()
    policy = policy or RetryPolicy()
    packing = packing or pack_settings(ws, remote)
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
        ws.cache.clean_tmp()  # packs a killed push was building
        plan = plan_push(ws.cache, list(top_hashes), target, n_jobs, warn, policy, packing)
        summary.strategy = plan.inventory.strategy
        if plan.uploads or plan.manifests:
            from gitquilt.ops.remote_lease import check_lease, mark_clone

            # a gc --remote deleting now could take what the plan counts on
            call_with_retries(lambda: check_lease(target), policy)
            mark_clone(ws.root, ws.git, target)
        summary.skipped = plan.present_fragments
        summary.skipped_bytes = plan.present_bytes
        tally = Tally()
        executor = Executor(n_jobs, progress, policy)
        cache = ws.cache

        put_file = getattr(target, "put_file", None)  # a directory: copied in the kernel, hashed once

        def upload(digest: str, size: int, on_bytes: Any) -> None:
            if put_file is not None:
                put_file(fragment_key(digest), cache.object_file(digest), size, digest,
                         overwrite=digest in plan.repair, on_bytes=on_bytes)
                return
            with cache.open(digest) as f:
                target.put(fragment_key(digest), CountingReader(f, on_bytes), size, digest,  # type: ignore[arg-type]
                           overwrite=digest in plan.repair)

        packed = None
        if plan.uploads:
            progress.start(plan.bytes, "B", f"push to {target.url}")
            try:
                if plan.packed:
                    orphans = {} if plan.packs is None else {
                        pid: plan.packs.listing.packs[pid][0] for pid in plan.packs.listing.orphans}
                    packed = upload_packs(cache, target, plan.packed, packing, n_jobs, progress, policy, orphans)
                executor.run(plan.fragments, upload, fragment_key, tally)
            finally:
                progress.close()
        target.flush()  # every fragment in place before any manifest names it
        failed = {parse_key(k)[1] for k, _ in tally.failures if parse_key(k) is not None}  # type: ignore[index]
        if packed is not None:
            failed |= set(packed.failed)
            tally.files += packed.fragments
            tally.bytes += packed.bytes
            tally.retries += packed.retries
            tally.failures += packed.failures
            summary.packs = packed.packs
        ready = [t for t in plan.manifests if not any(d in failed for d in plan.needs.get(t, ()))]
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
    on_stored: Callable[[str], None] | None = None,
) -> TransferSummary:
    """Download the manifests and fragments of these package versions into the cache.

    ``on_stored(digest)``, if given, is called from a worker thread as soon as a large
    fragment (at least :data:`OWN_BATCH_MIN`) is durable in the cache, while the others
    still download (``pull`` writes its work-tree file then).
    """
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
        _fetch_fragments(ws, source, plan.fragments, n_jobs, progress, policy, summary, reuse_survey=False,
                         on_stored=on_stored)
    finally:
        summary.requests = source.request_count() - requests0
        summary.seconds = time.monotonic() - started
        if own:
            source.close()
    return summary


class PullFetcher:
    """checkout's fetcher for ``pull``: whole package versions, fetched after checkout planned.

    Called by checkout even when the work tree lacks nothing (``always``), it fetches
    every manifest and fragment of ``tops`` (as ``git quilt fetch`` would) and hands
    checkout's ``on_stored`` to :func:`fetch_tops`, so that each large file is written
    into the work tree as soon as its fragment is durable, while the others download.
    """

    always = True

    def __init__(self, tops: list[str], remote: str | None = None, jobs: int | None = None,
                 progress: Progress | None = None, policy: RetryPolicy | None = None,
                 backend: Remote | None = None) -> None:
        self.tops = list(tops)
        self.remote = remote
        self.jobs = jobs
        self.progress = progress
        self.policy = policy
        self.backend = backend
        self.on_stored: Callable[[str], None] | None = None  # set by checkout
        self.summary: TransferSummary | None = None  # once fetched
        self._manifests: TransferSummary | None = None
        self.started = False  # a fetch was tried (it may have failed)

    def fetch_manifests(self, ws: Workspace, _missing: list[str]) -> None:
        """Bring the versions' manifests in (checkout plans with them)."""
        self.started = True
        self._manifests = fetch_manifests(ws, self.tops, self.remote, self.jobs, self.backend)

    def __call__(self, ws: Workspace, _refs: Any, _missing: list[str]) -> None:
        self.started = True
        summary = fetch_tops(ws, self.tops, self.remote, self.jobs, self.progress, self.policy, self.backend,
                             on_stored=self.on_stored)
        if self._manifests is not None:
            summary.manifests += self._manifests.manifests
            summary.bytes += self._manifests.bytes
            summary.requests += self._manifests.requests
            summary.seconds += self._manifests.seconds
        self.summary = summary


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
    """Download these fragments (digest -> size, None when unknown) that the cache lacks.

    Fragments in packs come by ranged reads; the listing of the remote's packs is
    reused for a few seconds, so that many small calls do not each list it again.
    """
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


def fetch_digests(
    ws: Workspace, digests: Iterable[str], remote: str | None = None, *, jobs: int | None = None,
    progress: Progress | None = None, policy: RetryPolicy | None = None, backend: Remote | None = None,
) -> TransferSummary:
    """Download any set of fragments the cache lacks, sizes unknown (on-demand reads).

    Each fragment is taken from a pack by a ranged read where a pack holds it (one GET
    for neighbours), else as a loose object, and is verified before it enters the
    cache. Raises TransferFailed naming what could not be fetched.
    """
    return fetch_fragments(ws, dict.fromkeys(digests), remote, jobs, progress, policy, backend)


def _fetch_fragments(ws: Workspace, source: Remote, items: list[tuple[str, int]], jobs: int, progress: Progress,
                     policy: RetryPolicy | None, summary: TransferSummary, reuse_survey: bool = True,
                     on_stored: Callable[[str], None] | None = None) -> None:
    """Fetch ``items`` (digest, size or -1): out of packs where one holds them, the rest loose.

    A copy in a pack that fails (damaged, cut short, or the pack gone since the
    listing) is looked for once more elsewhere: in another pack, then as a loose
    object; if none exists the pack's failure is what is reported.
    """
    if not items:
        return
    policy = policy or RetryPolicy()
    cache = ws.cache
    needed = dict(items)
    if reuse_survey:
        packs = recent_survey(source, cache.root, jobs, policy, progress.warn, needed)
    else:
        packs = survey_packs(source, cache.root, jobs, policy, progress.warn)
    caps = source.capabilities()
    cut, one_open = caps.parallel_ranges, caps.seekable_get
    plan = make_plan(needed, packs.indexes, cut) if packs.indexes else None
    loose = [(d, needed[d]) for d in (plan.missing if plan is not None else needed)]
    total = (plan.bytes if plan is not None else 0) + sum(max(s, 0) for _, s in loose)
    progress.start(total, "B", f"fetch from {source.url}")
    tally = Tally()
    got = PackFetch()
    try:
        with cache.batch() as batch:
            if plan is not None:
                got = fetch_packed(batch, source, plan, jobs, progress, policy, one_open)
                _count(summary, got)
                if got.failed:
                    loose += _fetch_elsewhere(batch, source, packs, needed, got, jobs, progress, policy, summary,
                                              cut, one_open)
            _fetch_loose(batch, source, loose, jobs, progress, policy, tally, on_stored)
    finally:
        progress.close()
    summary.fragments += tally.files
    summary.bytes += tally.bytes
    summary.retries += tally.retries
    failures = []
    for key, reason in tally.failures:
        parsed = parse_key(key)
        if parsed is not None and parsed[1] in got.failed and "is not on" in reason:
            digest = parsed[1]
            key, reason = got.failed[digest]  # no loose copy either: the pack's failure is the news
            if digest in got.damaged:
                tally.damaged.add(key)
        failures.append((key, reason))
    tally.failures = failures
    raise_failures(tally, "fetched from", source.url)


def _count(summary: TransferSummary, got: PackFetch) -> None:
    summary.fragments += got.fragments
    summary.bytes += got.bytes
    summary.retries += got.retries
    summary.packs += got.packs


def _fetch_elsewhere(batch: WriteBatch, source: Remote, packs: RemotePacks, needed: dict[str, int], got: PackFetch,
                     jobs: int, progress: Progress, policy: RetryPolicy, summary: TransferSummary,
                     cut: bool, one_open: bool) -> list[tuple[str, int]]:
    """Second chance for fragments whose pack copy failed: other packs now, loose ones returned."""
    if got.vanished:  # gc rewrote a pack since the listing: look again
        forget_survey(source)
        packs = survey_packs(source, batch.store.root, jobs, policy, progress.warn)
    bad = {parse_pack(key) for key, _ in got.failed.values()}
    retry = {d: needed[d] for d in got.failed}
    plan = make_plan(retry, packs.without(bad), cut)
    again = fetch_packed(batch, source, plan, jobs, progress, policy, one_open)
    _count(summary, again)
    return [(d, needed[d]) for d in [*plan.missing, *again.failed]]


def parse_pack(key: str) -> str:
    """The pack id in ``packs/<id>.pack`` (the key itself for anything else)."""
    parsed = parse_pack_key(key)
    return parsed[1] if parsed is not None else key


def _fetch_loose(batch: WriteBatch, source: Remote, items: list[tuple[str, int]], jobs: int, progress: Progress,
                 policy: RetryPolicy | None, tally: Tally, on_stored: Callable[[str], None] | None = None) -> None:
    if not items:
        return
    if on_stored is not None:
        # the large ones first: their work-tree copies then overlap the small downloads
        items = sorted(items, key=lambda item: item[1] < OWN_BATCH_MIN)
    ranges = ThreadPoolExecutor(jobs, thread_name_prefix="gitquilt-range")
    budget = ByteBudget(DOWNLOAD_MEMORY)
    local = source.capabilities().seekable_get  # a directory: a plain file, read into one reused buffer
    try:
        def download(digest: str, size: int, on_bytes: Any) -> None:
            key = fragment_key(digest)
            known = None if size < 0 else size
            with contextlib.closing(open_download(source, key, known, ranges, budget)) as body:
                label = f"{key} from {source.url}"
                reader = ChunkReader(body, on_bytes, label) if local else CountingReader(body, on_bytes, network=label)
                if size >= OWN_BATCH_MIN:
                    # a batch of its own, committed (fsync, link) by this worker: a large file's
                    # writeback (and, in a pull, its copy into the work tree) overlaps the other
                    # downloads instead of queueing after all of them
                    batch.store.put_stream(reader, digest, known, where=label)  # type: ignore[arg-type]
                    if on_stored is not None:
                        on_stored(digest)
                else:
                    batch.put_stream(reader, digest, known, where=label)  # type: ignore[arg-type]

        Executor(jobs, progress, policy).run(items, download, fragment_key, tally)
    finally:
        ranges.shutdown(wait=True, cancel_futures=True)


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

