"""``git quilt verify --remote R [--read-data]``: does the remote hold the pinned packages?

For each package version: the remote's own manifest is downloaded and validated
against its top hash (the cache's copy proves nothing about the remote), then every
fragment it names must be listed on the remote with the right size. With
``--read-data`` each fragment is downloaded and re-hashed — never trusting an ETag or
a composite multipart checksum (RELIABILITY.md §22) — and nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any

from gitquilt.errors import QuiltError
from gitquilt.manifest_io import read_manifest_bytes
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.transfer import MAX_MANIFEST_BYTES, open_workspace_remote
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, retryable
from gitquilt.ops.transfer_plan import survey_fragments
from gitquilt.ops.workspace import Workspace
from gitquilt.remotes import ObjectMissing, Remote, fragment_key, manifest_key

BLOCK = 1 << 20


@dataclass
class RemoteVerifyReport:
    """What ``verify --remote`` checked and found."""

    remote: str
    packages: int = 0
    manifests: int = 0
    fragments: int = 0
    bytes: int = 0  # bytes downloaded and re-hashed (--read-data)
    missing: list[str] = field(default_factory=list)  # keys absent from the remote
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.damaged

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote, "packages": self.packages, "manifests": self.manifests,
            "fragments": self.fragments, "bytes": self.bytes, "ok": self.ok, "missing": self.missing,
            "damaged": [{"key": k, "reason": r} for k, r in self.damaged], "requests": self.requests,
        }


def verify_remote(
    ws: Workspace, tops: list[str], remote: str | None = None, read_data: bool = False, jobs: int | None = None,
    progress: Progress | None = None, backend: Remote | None = None, policy: RetryPolicy | None = None,
) -> RemoteVerifyReport:
    """Check that the remote holds every manifest and fragment of ``tops`` (and, with
    ``read_data``, that every fragment's bytes hash to its name)."""
    progress = progress or NullProgress()
    policy = policy or RetryPolicy()
    n_jobs = max(1, jobs or ws.config.jobs)
    own = backend is None
    target = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    report = RemoteVerifyReport(target.url, packages=len(set(tops)))
    requests0 = target.request_count()
    try:
        sizes = _manifests(target, sorted(set(tops)), n_jobs, policy, report)
        inv = survey_fragments(target, sizes, n_jobs, progress.warn, policy)
        present = []
        for digest, size in sorted(sizes.items()):
            key = fragment_key(digest)
            remote_size = inv.fragments.get(digest)
            if remote_size is None:
                report.missing.append(key)
            elif remote_size != size:
                report.damaged.append((key, f"{remote_size} bytes on the remote, the manifest says {size}"))
            else:
                present.append((digest, size))
        report.fragments = len(sizes)
        if read_data and present:
            _read_data(target, present, n_jobs, policy, progress, report)
    finally:
        report.requests = target.request_count() - requests0
        if own:
            target.close()
    report.missing.sort()
    report.damaged.sort()
    return report


def _manifests(target: Remote, tops: list[str], jobs: int, policy: RetryPolicy,
               report: RemoteVerifyReport) -> dict[str, int]:
    def one(top: str) -> tuple[str, Any]:
        key = manifest_key(top)

        def fetch() -> bytes:
            with contextlib.closing(target.get(key)) as body:
                return body.read(MAX_MANIFEST_BYTES + 1)  # type: ignore[no-any-return]

        try:
            data = call_with_retries(fetch, policy)
        except ObjectMissing:
            return top, None
        try:
            return top, read_manifest_bytes(data, top, f"{key} on {target.url}")
        except QuiltError as exc:
            return top, str(exc)

    sizes: dict[str, int] = {}
    for top, result in parallel_map(one, tops, min(jobs, max(1, len(tops)))):
        if result is None:
            report.missing.append(manifest_key(top))
        elif isinstance(result, str):
            report.damaged.append((manifest_key(top), result))
        else:
            report.manifests += 1
            for i in range(len(result)):
                sizes[result.sha256(i)] = result.sizes[i]
    return sizes


def _read_data(target: Remote, items: list[tuple[str, int]], jobs: int, policy: RetryPolicy, progress: Progress,
               report: RemoteVerifyReport) -> None:
    progress.start(sum(s for _, s in items), "B", f"reading {target.url}")

    def one(item: tuple[str, int]) -> tuple[str, int, str | None]:
        digest, _size = item
        key = fragment_key(digest)
        for attempt in range(policy.attempts):
            h = hashlib.sha256()
            n = 0
            try:
                with contextlib.closing(target.get(key)) as body:
                    while chunk := body.read(BLOCK):
                        h.update(chunk)
                        n += len(chunk)
                        progress.update(len(chunk))
            except ObjectMissing:
                return key, 0, "vanished while verifying"
            except Exception as exc:  # noqa: BLE001 - classified just below: transient ones are retried
                progress.update(-n)
                if not retryable(exc) or attempt + 1 >= policy.attempts:
                    return key, 0, f"cannot read: {exc}"
                continue
            actual = h.hexdigest()
            return key, n, None if actual == digest else f"content hashes to {actual} ({n} bytes)"
        return key, 0, "cannot read"

    try:
        for key, n, reason in parallel_map(one, items, min(jobs, len(items))):
            report.bytes += n
            if reason is not None:
                report.damaged.append((key, reason))
    finally:
        progress.close()


@dataclass
class RepairResult:
    """What ``verify --remote --repair`` uploaded again, and what it could not."""

    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)  # the local cache lacks a good copy


def repair_remote(ws: Workspace, report: RemoteVerifyReport, remote: str | None = None, jobs: int | None = None,
                  backend: Remote | None = None) -> RepairResult:
    """Upload again, overwriting, every missing or damaged object whose cache copy is intact.

    Fragments go first, then manifests (the push order). A cache copy is re-hashed
    before it is sent: the cache is not trusted more than the remote.
    """
    from gitquilt.remotes import parse_key

    n_jobs = max(1, jobs or ws.config.jobs)
    own = backend is None
    target = backend or open_workspace_remote(ws, remote, n_jobs)[1]
    result = RepairResult()
    keys = sorted(set(report.missing) | {k for k, _ in report.damaged})
    parsed = [(k, parse_key(k)) for k in keys]
    fragments = [(k, p[1]) for k, p in parsed if p is not None and p[0] == "fragment"]
    manifests = [(k, p[1]) for k, p in parsed if p is not None and p[0] == "manifest"]
    cache = ws.cache
    try:
        def one_fragment(item: tuple[str, str]) -> tuple[str, bool]:
            key, digest = item
            if not cache.has(digest):
                return key, False
            with cache.open(digest) as f:
                data_ok = hashlib.file_digest(f, "sha256").hexdigest() == digest
            if not data_ok:
                return key, False
            with cache.open(digest) as f:
                size = cache.object_path(digest).stat().st_size
                target.put(key, f, size, digest, overwrite=True)
            return key, True

        for key, ok in parallel_map(one_fragment, fragments, min(n_jobs, max(1, len(fragments)))):
            (result.repaired if ok else result.unrepairable).append(key)
        target.flush()
        for key, top in manifests:
            try:
                cache.read_manifest(top)  # valid locally
                data = cache.manifest_bytes(top)
            except QuiltError:
                result.unrepairable.append(key)
                continue
            import io

            target.put(key, io.BytesIO(data), len(data), overwrite=True)
            result.repaired.append(key)
        target.flush()
    finally:
        if own:
            target.close()
    return result
