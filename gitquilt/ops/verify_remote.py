"""``git quilt verify --remote R [--read-data]``: does the remote hold the pinned packages?

For each package version: the remote's own manifest is downloaded and validated
against its top hash (the cache's copy proves nothing about the remote), then every
fragment it names must be held by a complete pack (its index says so, with the right
length) or be listed as a loose object with the right size. With ``--read-data`` each
pack holding a needed fragment is read once — its bytes must hash to its name, each
row's bytes to the row's sha256 — and each loose fragment is downloaded and
re-hashed, never trusting an ETag or a composite multipart checksum (RELIABILITY.md
§22); nothing is cached. A damaged pack is reported under its key, and each needed
fragment that no intact copy holds under the fragment's key ("in packs/…"), so that
``--repair`` can rebuild the pack from the cache or upload the fragment loose.
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
from gitquilt.ops.remote_packs import RemotePacks, index_cache, survey_packs
from gitquilt.ops.transfer import MAX_MANIFEST_BYTES, open_workspace_remote
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, retryable
from gitquilt.ops.transfer_plan import survey_fragments
from gitquilt.ops.workspace import Workspace
from gitquilt.packplan import PackCheck, check_pack
from gitquilt.packs import PackWriter, pack_key, parse_pack_key
from gitquilt.remotes import ObjectMissing, Remote, fragment_key, manifest_key

BLOCK = 1 << 20


@dataclass
class RemoteVerifyReport:
    """What ``verify --remote`` checked and found."""

    remote: str
    packages: int = 0
    manifests: int = 0
    fragments: int = 0
    packs: int = 0  # packs holding needed fragments (read whole with --read-data)
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
            "fragments": self.fragments, "packs": self.packs, "bytes": self.bytes, "ok": self.ok,
            "missing": self.missing,
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
        packs = survey_packs(target, ws.cache.root, n_jobs, policy, progress.warn) if sizes else RemotePacks(target.url)
        in_packs = packs.present(sizes)
        inv = survey_fragments(target, [d for d in sizes if d not in in_packs], n_jobs, progress.warn, policy)
        present = []
        for digest, size in sorted(sizes.items()):
            if digest in in_packs:
                continue
            key = fragment_key(digest)
            remote_size = inv.fragments.get(digest)
            if remote_size is None:
                report.missing.append(key)
            elif remote_size != size:
                report.damaged.append((key, f"{remote_size} bytes on the remote, the manifest says {size}"))
            else:
                present.append((digest, size))
        report.fragments = len(sizes)
        holders = sorted({pid for pids in packs.holding(in_packs).values() for pid in pids})
        report.packs = len(holders)
        if read_data and holders:
            broken = _read_packs(target, packs, holders, set(in_packs), n_jobs, policy, progress, report)
            _check_loose_copies(target, broken, sizes, n_jobs, policy, progress, report)
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


def _read_packs(target: Remote, packs: RemotePacks, pack_ids: list[str], needed: set[str], jobs: int,
                policy: RetryPolicy, progress: Progress, report: RemoteVerifyReport) -> dict[str, str]:
    """Read each pack once, checking its name and every row; damaged packs are reported.

    Returns the needed fragments that no pack holds intact (digest -> key of a damaged copy).
    """
    progress.start(sum(packs.indexes[p].pack_size for p in pack_ids), "B", f"reading packs on {target.url}")

    def one(pid: str) -> tuple[str, PackCheck | None, str | None]:
        index = packs.indexes[pid]
        for attempt in range(policy.attempts):
            n = [0]
            try:
                with contextlib.closing(target.get(pack_key(pid))) as body:
                    return pid, check_pack(_Counting(body, n, progress), index), None  # type: ignore[arg-type]
            except ObjectMissing:
                return pid, None, "vanished while verifying"
            except Exception as exc:  # noqa: BLE001 - classified just below: transient ones are retried
                progress.update(-n[0])
                if not retryable(exc) or attempt + 1 >= policy.attempts:
                    return pid, None, f"cannot read: {exc}"
        return pid, None, "cannot read"

    intact: set[str] = set()
    broken: dict[str, str] = {}  # needed digest -> pack key of a damaged copy
    try:
        for pid, check, problem in parallel_map(one, pack_ids, min(jobs, len(pack_ids))):
            key = pack_key(pid)
            index = packs.indexes[pid]
            if check is None:
                report.damaged.append((key, str(problem)))
                for entry in index:
                    if entry.sha256 in needed:
                        broken.setdefault(entry.sha256, key)
                continue
            report.bytes += check.size
            if not check.ok:
                report.damaged.append((key, "; ".join(p.split(": ", 1)[1] for p in check.problems())))
            bad = set(check.bad)
            for entry in index:
                if entry.sha256 in needed:
                    if entry.sha256 in bad:
                        broken.setdefault(entry.sha256, key)
                    else:
                        intact.add(entry.sha256)
    finally:
        progress.close()
    return {d: key for d, key in broken.items() if d not in intact}


def _check_loose_copies(target: Remote, broken: dict[str, str], sizes: dict[str, int], jobs: int,
                        policy: RetryPolicy, progress: Progress, report: RemoteVerifyReport) -> None:
    """A fragment whose pack copies are damaged is fine if an intact loose copy exists (a repair's)."""
    if not broken:
        return
    inv = survey_fragments(target, list(broken), jobs, progress.warn, policy)
    candidates = sorted((d, sizes[d]) for d in broken if inv.fragments.get(d) == sizes[d])
    loose = RemoteVerifyReport(target.url)
    if candidates:
        _read_data(target, candidates, jobs, policy, progress, loose)
    report.bytes += loose.bytes
    bad_loose = {k for k, _ in loose.damaged}
    good = {d for d, _ in candidates if fragment_key(d) not in bad_loose}
    for digest, key in sorted(broken.items()):
        if digest not in good:
            report.damaged.append((fragment_key(digest), f"in {key}: its bytes there are damaged"))


class _Counting:
    """A stream that reports the bytes read to a progress bar (and keeps the count for a retry)."""

    def __init__(self, raw: Any, count: list[int], progress: Progress) -> None:
        self._raw, self._count, self._progress = raw, count, progress

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._raw.read(size)
        self._count[0] += len(data)
        self._progress.update(len(data))
        return data


@dataclass
class RepairResult:
    """What ``verify --remote --repair`` uploaded again, and what it could not."""

    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)  # the local cache lacks a good copy


def repair_remote(ws: Workspace, report: RemoteVerifyReport, remote: str | None = None, jobs: int | None = None,
                  backend: Remote | None = None) -> RepairResult:
    """Upload again, overwriting, every missing or damaged object whose cache copy is intact.

    Packs go first (a damaged pack is rebuilt from the cache when the cache holds every
    fragment of it: the same fragments in the same order give the same bytes, checked
    against the pack's name before the upload), then fragments — loose, unless their
    pack was just rebuilt — then manifests (the push order). A cache copy is re-hashed
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
    packs = [(k, p[1]) for k in keys if (p := parse_pack_key(k)) is not None and p[0] == "pack"]
    reasons = dict(report.damaged)
    cache = ws.cache
    try:
        rebuilt = set()
        for key, pid in packs:
            if _rebuild_pack(ws, target, pid):
                result.repaired.append(key)
                rebuilt.add(key)
            else:
                result.unrepairable.append(key)
        fixed = [(k, d) for k, d in fragments if reasons.get(k, "").startswith("in ")
                 and reasons[k][3:].split(":", 1)[0] in rebuilt]
        result.repaired += [k for k, _ in fixed]
        fragments = [f for f in fragments if f not in fixed]

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


def _rebuild_pack(ws: Workspace, target: Remote, pack_id: str) -> bool:
    """Rebuild a damaged pack from the cache and upload it over the damaged one; False if impossible."""
    index = index_cache(ws.cache.root).load(pack_id)
    cache = ws.cache
    if index is None or any(not cache.has(e.sha256) for e in index):
        return False
    ws.cache.ensure()
    with PackWriter(cache.tmp) as writer:
        try:
            for entry in index:
                with cache.open(entry.sha256) as f:
                    writer.add(entry.sha256, entry.length, f)  # re-hashed: a damaged cache copy fails here
        except QuiltError:
            return False
        built = writer.finish()
    try:
        if built.pack_id != pack_id:
            return False
        with built.open() as f:
            target.put(pack_key(pack_id), f, built.size, pack_id, overwrite=True)
        target.flush()
    finally:
        built.remove()
    return True
