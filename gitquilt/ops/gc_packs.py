"""``gc --remote`` over packs: drop packs with no live fragment, rewrite mostly-dead ones.

Planning (:func:`plan_pack_gc`) uses :func:`gitquilt.packplan.plan_repack`: a pack none
of whose fragments is live is dropped; one whose dead bytes exceed the repack
threshold is rewritten — its live fragments (unless a kept pack or a loose object
already holds them) are carried into new packs. Packs younger than the grace period
are left alone (a concurrent push may be counting on them), and so is every pack when
some live manifest cannot be read. Orphan packs (no index: a push killed between the
two uploads) and dangling indexes (no pack) are removed once past the grace period.

Order, so that a kill at any point leaves every live fragment in an indexed pack (or
loose): new packs go up first, each pack before its index (:func:`carry`); only then,
per old pack, its index is deleted and after it the pack (:func:`delete_packs`). A
kill between the two leaves an orphan pack, which the next gc removes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gitquilt.errors import IntegrityError, QuiltError
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.remote_packs import RemotePacks, index_cache
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, retryable
from gitquilt.ops.transfer_packs import send_pack
from gitquilt.packplan import RangeRead, RepackPlan, plan_fetch, plan_repack, split_range
from gitquilt.packs import DEFAULT_REPACK_THRESHOLD, DEFAULT_TARGET_SIZE, build_packs, bytes_opener, index_key, pack_key
from gitquilt.remotes import Remote


@dataclass
class PackGc:
    """What gc does with a remote's packs."""

    plan: RepackPlan = field(default_factory=RepackPlan)
    orphans: list[str] = field(default_factory=list)  # packs without an index, past the grace period
    dangling: list[str] = field(default_factory=list)  # indexes without a pack, past the grace period
    recent: int = 0  # packs kept because they are younger than the grace period
    dead: set[str] = field(default_factory=set)  # fragments that leave the remote with the packs
    orphan_bytes: int = 0
    written: list[str] = field(default_factory=list)  # new pack ids (after carry)

    @property
    def deleted(self) -> list[str]:
        """Pack ids whose pack file goes: dropped, rewritten and orphans."""
        return sorted({*self.plan.drop, *self.plan.rewrite, *self.orphans})

    @property
    def freed(self) -> int:
        return self.plan.freed_bytes + self.orphan_bytes


def _recent(mtime: float | None, cutoff: float) -> bool:
    return mtime is None or mtime > cutoff


def plan_pack_gc(packs: RemotePacks, live: set[str], loose_live: set[str], cutoff: float, hold_all: bool,
                 threshold: float = DEFAULT_REPACK_THRESHOLD) -> PackGc:
    """Decide what to drop, rewrite and remove (see the module doc). ``hold_all``: touch no indexed pack."""
    listing = packs.listing
    out = PackGc()
    protected = set()
    for pid in packs.indexes:
        young = _recent(listing.packs[pid][1], cutoff) or _recent(listing.indexes[pid][1], cutoff)
        if young:
            out.recent += 1
        if young or hold_all:
            protected.add(pid)
    out.plan = plan_repack(packs.indexes, live, threshold=threshold, protected=protected, elsewhere=loose_live)
    for pid in listing.orphans:
        size, mtime = listing.packs[pid]
        if _recent(mtime, cutoff):
            out.recent += 1
        else:
            out.orphans.append(pid)
            out.orphan_bytes += size
    out.dangling = [pid for pid in listing.dangling if not _recent(listing.indexes[pid][1], cutoff)]
    kept: set[str] = set()
    for pid in out.plan.keep:
        kept.update(e.sha256 for e in packs.indexes[pid])
    for pid in out.plan.drop + out.plan.rewrite:
        out.dead.update(e.sha256 for e in packs.indexes[pid] if e.sha256 not in live and e.sha256 not in kept)
    return out


def carry(target: Remote, packs: RemotePacks, gc: PackGc, cache_root: Path, tmp_dir: Path, policy: RetryPolicy,
          target_size: int = DEFAULT_TARGET_SIZE, warn: Callable[[str], None] | None = None) -> None:
    """Write the live fragments of rewritten packs into new packs (pack, then index).

    Each fragment is read from its old pack by coalesced ranged GETs and verified on
    the way (twice: when cut out of the range and when packed). A fragment whose old
    copy is damaged cannot be carried: its old pack is then kept, not rewritten.
    Raises on a remote failure — before anything is deleted.
    """
    if not gc.plan.carry:
        return
    warn = warn or (lambda _m: None)
    by_pack: dict[str, list[str]] = {}
    for pid, entry in gc.plan.carry:
        by_pack.setdefault(pid, []).append(entry.sha256)
    damaged: set[str] = set()

    def fragments() -> Iterator[tuple[str, int, Callable[[], object]]]:
        for pid, digests in by_pack.items():
            got = _read_fragments(target, packs, pid, digests, policy)
            for digest in digests:
                data = got.get(digest)
                if data is None:
                    damaged.add(pid)
                    warn(f"gc: fragment {digest} in {pack_key(pid)} is damaged and cannot be carried; "
                         "keeping that pack (git quilt verify --remote NAME --read-data --repair)")
                    continue
                yield digest, len(data), bytes_opener(data)

    cache = index_cache(cache_root)
    for built in build_packs(fragments(), tmp_dir, target_size):  # type: ignore[arg-type]
        try:
            send_pack(target, built, policy)
        finally:
            built.remove()
        gc.written.append(built.pack_id)
        with contextlib.suppress(OSError, QuiltError):
            cache.add(built.index)
    target.flush()
    # a pack this run rebuilt may be an orphan the listing showed (an earlier gc killed between
    # the pack and its index): it now has its index again and must not be deleted as an orphan
    gc.orphans = [p for p in gc.orphans if p not in gc.written]
    if damaged:
        gc.plan.rewrite = [p for p in gc.plan.rewrite if p not in damaged]
        gc.plan.keep = sorted({*gc.plan.keep, *damaged})
        for pid in damaged:
            gc.dead -= {e.sha256 for e in packs.indexes[pid]}


def _read_fragments(target: Remote, packs: RemotePacks, pid: str, digests: list[str],
                    policy: RetryPolicy) -> dict[str, bytes]:
    """The verified bytes of ``digests`` out of pack ``pid`` (damaged ones left out)."""
    plan = plan_fetch(digests, {pid: packs.indexes[pid]})
    out: dict[str, bytes] = {}
    for read in plan.reads:
        for rng in read.ranges:
            out.update(_read_range(target, pid, rng, policy))
    return out


def _read_range(target: Remote, pid: str, rng: RangeRead, policy: RetryPolicy) -> dict[str, bytes]:
    """One range's fragments, retried while some are missing; a short or damaged copy is left out."""
    got: dict[str, bytes] = {}
    for attempt in range(policy.attempts):
        try:
            with contextlib.closing(target.get(pack_key(pid), rng.start, rng.length)) as body:
                for sha, data in split_range(body, pid, rng, lambda _s, _e: None):
                    got[sha] = data
            if len(got) == len(rng.parts):
                return got
        except Exception as exc:
            if not retryable(exc) or (attempt + 1 >= policy.attempts and not isinstance(exc, IntegrityError)):
                raise
        if attempt + 1 < policy.attempts:
            time.sleep(policy.delay(attempt))
    return got


def delete_packs(target: Remote, gc: PackGc, cache_root: Path, jobs: int, policy: RetryPolicy) -> None:
    """Delete each dropped or rewritten pack (index first, then the pack), orphans and dangling indexes."""
    indexed = sorted({*gc.plan.drop, *gc.plan.rewrite})
    cache = index_cache(cache_root)

    def one(pid: str) -> None:
        call_with_retries(lambda: target.delete(index_key(pid)), policy)
        target.flush()
        call_with_retries(lambda: target.delete(pack_key(pid)), policy)
        cache.remove(pid)

    tasks = [*indexed]
    for _ in parallel_map(one, tasks, min(jobs, max(1, len(tasks)))):
        pass
    loose_keys = [pack_key(p) for p in gc.orphans] + [index_key(p) for p in gc.dangling]
    for _ in parallel_map(lambda k: call_with_retries(lambda: target.delete(k), policy), loose_keys,
                          min(jobs, max(1, len(loose_keys)))):
        pass
