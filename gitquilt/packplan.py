"""Reading packs and planning gc over them (docs/FORMAT.md "Packs"); pure logic, stdlib only.

* :func:`plan_fetch` — for needed fragments, pick packs (those holding more of the
  needed set first) and coalesce byte ranges into few GETs, or the whole pack;
* :func:`split_range` — cut a range's bytes back into fragments, each verified;
  :func:`split_read` — all ranges of one pack from a single stream (one open per pack);
* :func:`check_pack` — read a whole pack once, checking its name and every fragment
  (``verify --remote --read-data``);
* :func:`plan_repack` — which packs ``gc --remote`` drops, rewrites or keeps.
"""

from __future__ import annotations

import hashlib
import heapq
import io
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from gitquilt.digest import BLOCK_SIZE, EMPTY_SHA256, check_digest
from gitquilt.errors import IntegrityError, UsageError
from gitquilt.packs import DEFAULT_MAX_GAP, DEFAULT_REPACK_THRESHOLD, DEFAULT_WHOLE_FRACTION, MiB, PackEntry, PackIndex


# -- fetching -----------------------------------------------------------------------------
class RangePart(NamedTuple):
    """A fragment inside a range: its bytes are ``range[offset : offset + length]``."""

    sha256: str
    offset: int  # relative to the range's start
    length: int


class RangeRead(NamedTuple):
    """One GET: pack bytes ``[start, end)`` holding ``parts`` (in offset order)."""

    start: int
    end: int  # exclusive
    parts: tuple[RangePart, ...]

    @property
    def length(self) -> int:
        return self.end - self.start


class PackRead(NamedTuple):
    """The GETs for one pack; ``whole`` when they cover the whole pack."""

    pack_id: str
    ranges: tuple[RangeRead, ...]
    whole: bool


@dataclass
class PackFetchPlan:
    """How to fetch needed fragments out of packs."""

    reads: list[PackRead] = field(default_factory=list)
    #: Needed digests that no pack holds (fetch them as loose objects).
    missing: list[str] = field(default_factory=list)
    #: Needed digests whose bytes are known without any request (the empty fragment).
    local: list[str] = field(default_factory=list)
    #: (digest, pack id) where an index's length disagrees with the size asked for: that copy was not used.
    mismatched: list[tuple[str, str]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(len(r.ranges) for r in self.reads)

    @property
    def bytes(self) -> int:
        return sum(rng.length for r in self.reads for rng in r.ranges)

    @property
    def fragments(self) -> int:
        return sum(len(rng.parts) for r in self.reads for rng in r.ranges)


def locate(needed: Iterable[str], indexes: Mapping[str, PackIndex]) -> dict[str, list[tuple[str, int]]]:
    """For each needed digest held by some pack: ``[(pack id, row), …]`` (packs in id order)."""
    wanted: dict[bytes, str] = {}
    for d in needed:
        wanted[bytes.fromhex(check_digest(d, "fragment hash"))] = d
    found: dict[str, list[tuple[str, int]]] = {}
    if not wanted:
        return found
    for pid in sorted(indexes):
        index = indexes[pid]
        if len(wanted) <= 32:  # a few digests: C-speed searches beat a Python loop over the rows
            for d in wanted.values():
                row = index.row_of(d)
                if row is not None:
                    found.setdefault(d, []).append((pid, row))
            continue
        raw = index.digests
        for i in range(len(index)):
            hit = wanted.get(raw[32 * i: 32 * i + 32])
            if hit is not None:
                found.setdefault(hit, []).append((pid, i))
    return found


def plan_fetch(needed: Iterable[str] | Mapping[str, int], indexes: Mapping[str, PackIndex], *,
               max_gap: int = DEFAULT_MAX_GAP, whole_fraction: float = DEFAULT_WHOLE_FRACTION,
               max_request: int | None = None) -> PackFetchPlan:
    """Plan the GETs that bring ``needed`` fragments out of the packs in ``indexes``.

    Each fragment is taken from one pack, chosen greedily: the pack holding the most
    still-unassigned needed fragments first (ties: the smaller pack, then the id).
    Per pack, needed byte ranges no more than ``max_gap`` apart merge into one GET;
    when the merged ranges exceed ``whole_fraction`` of the pack, the whole pack is one
    GET. ``max_request`` (if set) then cuts GETs longer than that at fragment boundaries,
    so a big pack can be fetched in parallel. With ``needed`` a mapping digest → size,
    index rows whose length differs are not used (listed in ``mismatched``).
    """
    sizes = needed if isinstance(needed, Mapping) else None
    wanted = sorted(set(needed))
    plan = PackFetchPlan()
    if EMPTY_SHA256 in wanted:
        wanted.remove(EMPTY_SHA256)
        plan.local.append(EMPTY_SHA256)
    hits = locate(wanted, indexes)
    cover: dict[str, list[tuple[str, int]]] = {}
    for d, places in hits.items():
        for pid, row in places:
            if sizes is not None and indexes[pid].lengths[row] != sizes[d]:
                plan.mismatched.append((d, pid))
                continue
            cover.setdefault(pid, []).append((d, row))
    heap = [(-len(rows), indexes[pid].pack_size, pid) for pid, rows in cover.items()]
    heapq.heapify(heap)
    assigned: set[str] = set()
    chosen: dict[str, list[tuple[str, int]]] = {}
    while heap:
        neg, psize, pid = heapq.heappop(heap)
        rows = [(d, r) for d, r in cover[pid] if d not in assigned]
        if not rows:
            continue
        if len(rows) < -neg:  # others took some since: requeue with the true count
            cover[pid] = rows
            heapq.heappush(heap, (-len(rows), psize, pid))
            continue
        chosen[pid] = rows
        assigned.update(d for d, _ in rows)
    plan.missing = [d for d in wanted if d not in assigned]
    for pid in sorted(chosen):
        index = indexes[pid]
        ranges, whole = _coalesce(index, chosen[pid], max_gap, whole_fraction)
        if max_request is not None:
            ranges = [piece for rng in ranges for piece in _cut(rng, max_request)]
        plan.reads.append(PackRead(pid, tuple(ranges), whole))
    plan.mismatched.sort()
    return plan


def _coalesce(index: PackIndex, rows: list[tuple[str, int]], max_gap: int,
              whole_fraction: float) -> tuple[list[RangeRead], bool]:
    entries = sorted((index.offsets[r], index.lengths[r], d) for d, r in rows)
    spans: list[tuple[int, int, list[tuple[str, int, int]]]] = []
    for off, length, d in entries:
        if spans and off - spans[-1][1] <= max_gap:
            start, end, parts = spans[-1]
            parts.append((d, off, length))
            spans[-1] = (start, max(end, off + length), parts)
        else:
            spans.append((off, off + length, [(d, off, length)]))
    fetched = sum(end - start for start, end, _ in spans)
    whole = fetched > whole_fraction * index.pack_size
    if whole:
        spans = [(0, index.pack_size, [p for _, _, parts in spans for p in parts])]
    return [RangeRead(s, e, tuple(RangePart(d, off - s, n) for d, off, n in parts)) for s, e, parts in spans], whole


def _cut(rng: RangeRead, max_request: int) -> list[RangeRead]:
    """Cut a range into pieces of at most ``max_request`` bytes where fragments allow."""
    if rng.length <= max_request or len(rng.parts) < 2:
        return [rng]
    pieces: list[RangeRead] = []
    start = rng.start
    parts: list[RangePart] = []
    for p in rng.parts:
        absolute = rng.start + p.offset
        if parts and absolute + p.length - start > max_request:
            pieces.append(RangeRead(start, absolute, tuple(parts)))
            start, parts = absolute, []
        parts.append(RangePart(p.sha256, absolute - start, p.length))
    pieces.append(RangeRead(start, rng.end, tuple(parts)))
    return pieces


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    got = 0
    while got < n:
        chunk = stream.read(min(n - got, 8 * MiB))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def mismatch_error(pack_id: str, sha: str, offset: int, data: bytes | memoryview) -> IntegrityError:
    """The error for a fragment of a pack whose bytes (at pack ``offset``) do not hash to ``sha``."""
    actual = hashlib.sha256(data).hexdigest()
    return IntegrityError(
        f"pack {pack_id}: fragment {sha} at offset {offset}: expected sha256 {sha}, got {actual} after {len(data)} bytes"
    )


def split_range(stream: BinaryIO, pack_id: str, rng: RangeRead,
                on_mismatch: Callable[[str, IntegrityError], None] | None = None,
                verify: bool = True) -> Iterator[tuple[str, bytes]]:
    """Cut the bytes of ``rng`` (read from ``stream``, which starts at ``rng.start``) into fragments.

    Yields ``(sha256, bytes)`` for each part whose bytes hash to its name. A part that
    does not: IntegrityError naming the pack, fragment, expected and actual hash — or,
    with ``on_mismatch``, reported there and skipped. A stream that ends early raises
    IntegrityError (retry the range). ``verify=False`` yields every part unhashed: for a
    caller that verifies each one itself on the way into the cache (hashing twice costs
    a core on small files) and reports a mismatch with :func:`mismatch_error`.
    """
    pos = 0
    for sha, offset, length in rng.parts:
        if offset < pos:
            raise ValueError(f"pack {pack_id}: parts of range {rng.start}-{rng.end} overlap or are out of order")
        while pos < offset:  # a gap between needed fragments: read it and drop it
            skipped = len(_read_exactly(stream, min(offset - pos, 8 * MiB)))
            if not skipped:
                break
            pos += skipped
        data = _read_exactly(stream, length) if pos == offset else b""
        if pos != offset or len(data) != length:
            got = pos + len(data)
            raise IntegrityError(
                f"pack {pack_id}: range {rng.start}-{rng.end} ended after {got} bytes; fragment {sha} "
                f"needs bytes {rng.start + offset}-{rng.start + offset + length}"
            )
        pos += length
        if verify and hashlib.sha256(data).hexdigest() != sha:
            err = mismatch_error(pack_id, sha, rng.start + offset, data)
            if on_mismatch is None:
                raise err
            on_mismatch(sha, err)
            continue
        yield sha, data


def split_read(stream: BinaryIO, read: PackRead,
               on_mismatch: Callable[[str, IntegrityError], None] | None = None,
               verify: bool = True) -> Iterator[tuple[str, bytes]]:
    """Every range of ``read`` out of one stream of the pack from byte 0 (one open per pack).

    For a directory remote or a downloaded pack file: the stream is moved to each range
    with ``seek`` when it can, else by reading and dropping the bytes in between.
    """
    pos = 0
    seekable = stream.seekable()
    for rng in read.ranges:
        if rng.start < pos:
            raise ValueError(f"pack {read.pack_id}: ranges overlap or are out of order")
        if rng.start > pos and seekable:
            stream.seek(rng.start - pos, io.SEEK_CUR)
        elif rng.start > pos:
            _skip(stream, rng.start - pos)
        pos = rng.start
        yield from split_range(stream, read.pack_id, rng, on_mismatch, verify)
        if rng.parts:
            pos = rng.start + rng.parts[-1].offset + rng.parts[-1].length


def _skip(stream: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = stream.read(min(n, 8 * MiB))
        if not chunk:
            return  # the next range finds the stream short and says so
        n -= len(chunk)


class PackCheck(NamedTuple):
    """What :func:`check_pack` found."""

    pack_id: str
    expected_size: int
    size: int  # bytes the stream held
    actual: str  # sha256 of those bytes
    bad: tuple[str, ...]  # fragments whose bytes are wrong or cut off

    @property
    def ok(self) -> bool:
        return self.actual == self.pack_id and self.size == self.expected_size and not self.bad

    def problems(self) -> list[str]:
        """One line per problem (empty when ok)."""
        out = []
        if self.size != self.expected_size:
            out.append(f"pack {self.pack_id}: holds {self.size} bytes, its index says {self.expected_size}")
        if self.actual != self.pack_id:
            out.append(f"pack {self.pack_id}: bytes hash to {self.actual}, not to the pack's name")
        out.extend(f"pack {self.pack_id}: fragment {d} is damaged" for d in self.bad)
        return out


def check_pack(stream: BinaryIO, index: PackIndex) -> PackCheck:
    """Read a whole pack once: hash it against its name, and every fragment against its index row."""
    whole = hashlib.sha256()
    bad: list[str] = []
    pos = 0
    for sha, offset, length in index:
        if pos != offset:  # the stream ended early: this fragment and the rest are missing
            bad.append(sha)
            continue
        frag = hashlib.sha256()
        left = length
        while left:
            chunk = stream.read(min(BLOCK_SIZE, left))
            if not chunk:
                break
            whole.update(chunk)
            frag.update(chunk)
            left -= len(chunk)
            pos += len(chunk)
        if left or frag.hexdigest() != sha:
            bad.append(sha)
    if pos == index.pack_size:
        while chunk := stream.read(BLOCK_SIZE):  # bytes beyond what the index describes
            whole.update(chunk)
            pos += len(chunk)
    return PackCheck(index.pack_id, index.pack_size, pos, whole.hexdigest(), tuple(bad))


# -- gc -------------------------------------------------------------------------------------
@dataclass
class RepackPlan:
    """What gc does with packs, in this order: write new packs (pack, then index) from
    ``carry``; then for each pack in ``drop`` and ``rewrite`` delete its index, then the pack."""

    drop: list[str] = field(default_factory=list)  # no live fragment
    rewrite: list[str] = field(default_factory=list)  # mostly dead: live fragments move to new packs
    keep: list[str] = field(default_factory=list)
    #: Live fragments to copy into new packs: (source pack id, entry), in source order.
    carry: list[tuple[str, PackEntry]] = field(default_factory=list)
    freed_bytes: int = 0  # pack bytes deleted minus bytes carried


def plan_repack(indexes: Mapping[str, PackIndex], live: Container[str], *,
                threshold: float = DEFAULT_REPACK_THRESHOLD, protected: Container[str] = (),
                elsewhere: Container[str] = ()) -> RepackPlan:
    """Decide which packs gc drops, rewrites or keeps.

    ``live``: digests something still references. ``protected``: pack ids gc must not
    touch (younger than the grace period). ``elsewhere``: live digests the remote also
    holds as loose objects. A pack with no live fragment is dropped; one whose dead
    bytes exceed ``threshold`` of its bytes (by count for a pack of empty fragments) is
    rewritten. Live fragments of rewritten packs are carried into new packs unless a
    kept pack or a loose object already holds them, so after the plan runs every live
    fragment that was reachable is reachable still.
    """
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"repack threshold must be between 0 and 1, not {threshold}")
    plan = RepackPlan()
    for pid in sorted(indexes):
        index = indexes[pid]
        if pid in protected:
            plan.keep.append(pid)
            continue
        live_rows = [i for i in range(len(index)) if index.sha256(i) in live]
        if not live_rows:
            plan.drop.append(pid)
            continue
        total = index.pack_size
        live_bytes = sum(index.lengths[i] for i in live_rows)
        dead = (total - live_bytes) / total if total else (len(index) - len(live_rows)) / len(index)
        (plan.rewrite if dead > threshold else plan.keep).append(pid)
    held: set[str] = set()
    for pid in plan.keep:
        held.update(e.sha256 for e in indexes[pid] if e.sha256 in live)
    for pid in plan.rewrite:
        for entry in indexes[pid]:
            if entry.sha256 in live and entry.sha256 not in held and entry.sha256 not in elsewhere:
                plan.carry.append((pid, entry))
                held.add(entry.sha256)
    deleted = sum(indexes[p].pack_size for p in plan.drop + plan.rewrite)
    plan.freed_bytes = deleted - sum(e.length for _, e in plan.carry)
    return plan
