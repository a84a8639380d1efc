"""gitquilt.packplan: fetch planning (coalescing, whole packs, several copies), splitting with
verification, whole-pack checks, and gc's repack plan; property tests over random packs."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitquilt.digest import EMPTY_SHA256
from gitquilt.errors import FormatError, IntegrityError, UsageError
from gitquilt.packplan import (
    PackFetchPlan,
    RangePart,
    RangeRead,
    check_pack,
    locate,
    plan_fetch,
    plan_repack,
    split_range,
    split_read,
)
from gitquilt.packs import BuiltPack, PackEntry, PackIndex, build_packs, bytes_opener

KiB = 1 << 10


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob(i: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{i}/{size}".encode()).digest()
    return (seed * (size // 32 + 1))[:size]


class Packs:
    """Packs built from blobs, and a fake remote that serves byte ranges of them."""

    def __init__(self, tmp: Path, groups: list[list[bytes]]) -> None:
        self.built: list[BuiltPack] = []
        for n, group in enumerate(groups):
            src = [(sha(b), len(b), bytes_opener(b)) for b in group]
            self.built += build_packs(src, tmp / str(n), target_size=1 << 40)
        self.data = {p.pack_id: p.path.read_bytes() for p in self.built}
        self.indexes = {p.pack_id: p.index for p in self.built}
        self.gets = 0

    def get(self, pack_id: str, start: int, end: int) -> io.BytesIO:
        self.gets += 1
        return io.BytesIO(self.data[pack_id][start:end])

    def fetch(self, plan: PackFetchPlan) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for read in plan.reads:
            for rng in read.ranges:
                for d, data in split_range(self.get(read.pack_id, rng.start, rng.end), read.pack_id, rng):
                    assert d not in out
                    out[d] = data
        return out


# -- choosing packs and coalescing ranges ----------------------------------------------------------
def test_close_ranges_merge_and_far_ones_do_not(tmp_path: Path) -> None:
    blobs = [blob(i, 1000) for i in range(100)]  # one pack of 100 kB
    p = Packs(tmp_path, [blobs])
    (pid,) = p.indexes
    need = [sha(blobs[i]) for i in (0, 1, 3, 60, 99)]
    plan = plan_fetch(need, p.indexes, max_gap=1000)
    (read,) = plan.reads
    assert not read.whole and read.pack_id == pid
    # 0,1 adjacent and 3 one fragment away (gap 1000 <= max_gap) merge; 60 and 99 are far
    assert [(r.start, r.end) for r in read.ranges] == [(0, 4000), (60_000, 61_000), (99_000, 100_000)]
    assert [len(r.parts) for r in read.ranges] == [3, 1, 1]
    assert read.ranges[0].parts[2] == RangePart(sha(blobs[3]), 3000, 1000)  # offsets relative to the range
    assert plan.requests == 3 and plan.bytes == 6000 and plan.fragments == 5
    assert p.fetch(plan) == {sha(blobs[i]): blobs[i] for i in (0, 1, 3, 60, 99)}
    assert p.gets == 3
    tight = plan_fetch(need, p.indexes, max_gap=999)
    assert [(r.start, r.end) for r in tight.reads[0].ranges] == [(0, 2000), (3000, 4000), (60_000, 61_000),
                                                                 (99_000, 100_000)]


def test_default_gap_is_64_kib(tmp_path: Path) -> None:
    blobs = [blob(i, 16 * KiB) for i in range(40)]
    p = Packs(tmp_path, [blobs])
    assert len(plan_fetch([sha(blobs[0]), sha(blobs[5])], p.indexes).reads[0].ranges) == 1  # gap 64 KiB
    assert len(plan_fetch([sha(blobs[0]), sha(blobs[6])], p.indexes).reads[0].ranges) == 2  # gap 80 KiB


def test_whole_pack_when_most_of_it_is_needed(tmp_path: Path) -> None:
    blobs = [blob(i, 1000) for i in range(10)]
    p = Packs(tmp_path, [blobs])
    need = [sha(blobs[i]) for i in (0, 2, 4, 6, 8, 9)]  # 6,000 of 10,000 bytes, scattered
    plan = plan_fetch(need, p.indexes, max_gap=0)
    (read,) = plan.reads
    assert read.whole and [(r.start, r.end) for r in read.ranges] == [(0, 10_000)]
    assert [part.offset for part in read.ranges[0].parts] == [0, 2000, 4000, 6000, 8000, 9000]
    assert p.fetch(plan) == {sha(blobs[i]): blobs[i] for i in (0, 2, 4, 6, 8, 9)}
    # exactly half is not "more than half"; a higher fraction keeps the ranges
    half = plan_fetch([sha(blobs[i]) for i in (0, 2, 4, 6, 8)], p.indexes, max_gap=0)
    assert not half.reads[0].whole and half.requests == 5
    assert not plan_fetch(need, p.indexes, max_gap=0, whole_fraction=0.9).reads[0].whole
    # gaps that coalescing pulls in count towards the fraction
    assert plan_fetch([sha(blobs[0]), sha(blobs[5])], p.indexes, max_gap=5000).reads[0].whole


def test_max_request_cuts_at_fragment_boundaries(tmp_path: Path) -> None:
    blobs = [blob(i, 1000) for i in range(10)] + [blob(99, 5000)]
    p = Packs(tmp_path, [blobs])
    plan = plan_fetch([sha(b) for b in blobs], p.indexes, max_request=3000)
    (read,) = plan.reads
    assert read.whole
    assert [(r.start, r.end) for r in read.ranges] == [(0, 3000), (3000, 6000), (6000, 9000), (9000, 10_000),
                                                       (10_000, 15_000)]  # a fragment is never cut
    assert p.fetch(plan) == {sha(b): b for b in blobs}


def test_a_fragment_in_several_packs_is_fetched_once_from_the_pack_holding_more(tmp_path: Path) -> None:
    a, b, c, d, e = (blob(i, 100) for i in range(5))
    p = Packs(tmp_path, [[a, b, c, d], [d, e]])
    big = next(pid for pid, ix in p.indexes.items() if len(ix) == 4)
    small = next(pid for pid, ix in p.indexes.items() if len(ix) == 2)
    plan = plan_fetch([sha(x) for x in (a, b, d, e)], p.indexes)
    by_pack = {r.pack_id: {part.sha256 for rng in r.ranges for part in rng.parts} for r in plan.reads}
    assert by_pack == {big: {sha(a), sha(b), sha(d)}, small: {sha(e)}}
    assert p.fetch(plan) == {sha(x): x for x in (a, b, d, e)}
    # d and e: the small pack holds both, so it alone is read
    plan = plan_fetch([sha(d), sha(e)], p.indexes)
    assert [r.pack_id for r in plan.reads] == [small]
    # d alone: a tie, broken by the smaller pack
    assert [r.pack_id for r in plan_fetch([sha(d)], p.indexes).reads] == [small]
    hits = locate([sha(d), sha(a), sha(b"nowhere")], p.indexes)
    assert sorted(pid for pid, _ in hits[sha(d)]) == sorted([big, small]) and sha(b"nowhere") not in hits


def test_missing_local_and_mismatched(tmp_path: Path) -> None:
    a, b = blob(1, 10), blob(2, 20)
    p = Packs(tmp_path, [[a, b, b""]])
    plan = plan_fetch({sha(a): 10, sha(b): 21, EMPTY_SHA256: 0, sha(b"loose"): 5}, p.indexes)
    assert plan.local == [EMPTY_SHA256]  # its bytes are known: no request
    assert sorted(plan.missing) == sorted([sha(b), sha(b"loose")])  # b's only copy has the wrong size
    assert plan.mismatched == [(sha(b), next(iter(p.indexes)))]
    assert p.fetch(plan) == {sha(a): a}
    empty = plan_fetch([], p.indexes)
    assert empty.reads == [] and empty.missing == [] and empty.requests == 0
    assert plan_fetch([sha(a)], {}).missing == [sha(a)]
    with pytest.raises(FormatError):
        plan_fetch(["ABC"], p.indexes)


def test_many_needed_fragments_use_the_row_scan(tmp_path: Path) -> None:
    blobs = [blob(i, 50) for i in range(200)]
    p = Packs(tmp_path, [blobs[:120], blobs[80:]])
    need = {sha(b): len(b) for b in blobs[::3]}
    plan = plan_fetch(need, p.indexes, max_gap=0, whole_fraction=1.0)
    assert p.fetch(plan) == {sha(b): b for b in blobs[::3]}
    in_both = [i for i in range(0, 200, 3) if 80 <= i < 120]
    assert len(need) > 32  # more than the C-speed search handles: the row scan runs
    assert sum(len(h) for h in locate(need, p.indexes).values()) == len(need) + len(in_both)


# -- splitting ------------------------------------------------------------------------------------
def _one_range(tmp_path: Path) -> tuple[Packs, str, RangeRead, list[bytes]]:
    blobs = [blob(i, 300) for i in range(6)]
    p = Packs(tmp_path, [blobs])
    plan = plan_fetch([sha(blobs[i]) for i in (1, 2, 4)], p.indexes, max_gap=300, whole_fraction=1.0)
    (read,) = plan.reads
    (rng,) = read.ranges
    assert (rng.start, rng.end) == (300, 1500)  # includes the 300-byte gap of fragment 3
    return p, read.pack_id, rng, blobs


def test_split_skips_gaps(tmp_path: Path) -> None:
    p, pid, rng, blobs = _one_range(tmp_path)
    assert list(split_range(p.get(pid, rng.start, rng.end), pid, rng)) == [
        (sha(blobs[1]), blobs[1]), (sha(blobs[2]), blobs[2]), (sha(blobs[4]), blobs[4])]


def test_one_corrupt_byte_is_an_integrity_error_naming_everything(tmp_path: Path) -> None:
    p, pid, rng, blobs = _one_range(tmp_path)
    data = bytearray(p.data[pid][rng.start:rng.end])
    data[300 + 17] ^= 0x01  # inside fragment 2
    bad = blobs[2][:17] + bytes([blobs[2][17] ^ 1]) + blobs[2][18:]
    it = split_range(io.BytesIO(bytes(data)), pid, rng)
    assert next(it) == (sha(blobs[1]), blobs[1])  # verified before the damage: usable
    with pytest.raises(IntegrityError) as info:
        next(it)
    msg = str(info.value)
    assert f"pack {pid}" in msg and f"fragment {sha(blobs[2])}" in msg
    assert f"expected sha256 {sha(blobs[2])}, got {sha(bad)}" in msg and "\n" not in msg
    # with a callback: reported, skipped, and the rest still comes
    seen: list[str] = []
    out = list(split_range(io.BytesIO(bytes(data)), pid, rng, on_mismatch=lambda d, e: seen.append(d)))
    assert [d for d, _ in out] == [sha(blobs[1]), sha(blobs[4])] and seen == [sha(blobs[2])]


@pytest.mark.parametrize("cut", [0, 1, 299, 300, 450, 899, 1199])
def test_truncated_range_is_an_error(tmp_path: Path, cut: int) -> None:
    p, pid, rng, _ = _one_range(tmp_path)
    data = p.data[pid][rng.start:rng.start + cut]
    with pytest.raises(IntegrityError, match=f"pack {pid}: range 300-1500 ended after"):
        list(split_range(io.BytesIO(data), pid, rng))


def test_parts_out_of_order_are_a_plan_bug(tmp_path: Path) -> None:
    rng = RangeRead(0, 4, (RangePart(sha(b"cd"), 2, 2), RangePart(sha(b"ab"), 0, 2)))
    with pytest.raises(ValueError, match="out of order"):
        list(split_range(io.BytesIO(b"abcd"), sha(b"abcd"), rng))


class Trickle(io.RawIOBase):
    """A stream that returns at most 7 bytes a read (a slow socket)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(7, size if size >= 0 else 7))


def test_short_reads_are_not_truncation(tmp_path: Path) -> None:
    p, pid, rng, blobs = _one_range(tmp_path)
    out = dict(split_range(Trickle(p.data[pid][rng.start:rng.end]), pid, rng))  # type: ignore[arg-type]
    assert out == {sha(blobs[i]): blobs[i] for i in (1, 2, 4)}


@pytest.mark.parametrize("seekable", [True, False])
def test_split_read_takes_every_range_from_one_stream(tmp_path: Path, seekable: bool) -> None:
    blobs = [blob(i, 500) for i in range(20)]
    p = Packs(tmp_path, [blobs])
    chosen = (0, 1, 7, 12, 13, 19)
    plan = plan_fetch([sha(blobs[i]) for i in chosen], p.indexes, max_gap=0)
    (read,) = plan.reads
    assert len(read.ranges) == 4 and not read.whole
    data = p.data[read.pack_id]
    stream = io.BytesIO(data) if seekable else Trickle(data)
    assert dict(split_read(stream, read)) == {sha(blobs[i]): blobs[i] for i in chosen}  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match="ended after"):
        list(split_read(io.BytesIO(data[:6100]), read))
    backwards = read._replace(ranges=read.ranges[::-1])
    with pytest.raises(ValueError, match="out of order"):
        list(split_read(io.BytesIO(data), backwards))


# -- whole-pack checks (verify --remote --read-data) ------------------------------------------------
def test_check_pack(tmp_path: Path) -> None:
    blobs = [blob(i, 100) for i in range(5)] + [b""]
    p = Packs(tmp_path, [blobs])
    ((pid, data),) = p.data.items()
    index = p.indexes[pid]
    good = check_pack(io.BytesIO(data), index)
    assert good.ok and good.problems() == [] and good.size == 500
    flipped = bytearray(data)
    flipped[250] ^= 0x80
    bad = check_pack(io.BytesIO(bytes(flipped)), index)
    assert not bad.ok and bad.bad == (sha(blobs[2]),) and bad.actual == sha(bytes(flipped))
    assert any("not to the pack's name" in line for line in bad.problems())
    short = check_pack(io.BytesIO(data[:230]), index)
    assert short.bad == (sha(blobs[2]), sha(blobs[3]), sha(blobs[4]), EMPTY_SHA256) and short.size == 230
    assert any("holds 230 bytes" in line for line in short.problems())
    longer = check_pack(io.BytesIO(data + b"extra"), index)
    assert not longer.ok and longer.bad == () and longer.size == 505
    # an index whose rows lie about the bytes (a consistent but wrong index) is caught per row
    liar = PackIndex.from_entries(pid, 500, [PackEntry(sha(b"x"), 0, 100), *list(index)[1:]])
    assert check_pack(io.BytesIO(data), liar).bad == (sha(b"x"),)


# -- gc -----------------------------------------------------------------------------------------------
def _ix(name: str, frags: list[tuple[str, int]]) -> PackIndex:
    rows, off = [], 0
    for d, n in frags:
        rows.append((d, off, n))
        off += n
    return PackIndex.from_entries(sha(name.encode()), off, rows)


def test_repack_plan() -> None:
    f = {c: sha(c.encode()) for c in "abcdefghij"}
    dead = _ix("dead", [(f["a"], 100), (f["b"], 100)])
    mostly_dead = _ix("mostly", [(f["c"], 10), (f["d"], 90), (f["e"], 100)])  # live c: 95 % dead
    mostly_live = _ix("live", [(f["f"], 60), (f["g"], 40)])  # live f: 40 % dead
    shared = _ix("shared", [(f["h"], 10), (f["c"], 10), (f["i"], 180)])  # live h: 95 % dead; c also in mostly
    young = _ix("young", [(f["j"], 50)])  # nothing live, but within the grace period
    indexes = {ix.pack_id: ix for ix in (dead, mostly_dead, mostly_live, shared, young)}
    live = {f["c"], f["f"], f["h"]}
    plan = plan_repack(indexes, live, threshold=0.5, protected={young.pack_id})
    assert plan.drop == [dead.pack_id]
    assert sorted(plan.rewrite) == sorted([mostly_dead.pack_id, shared.pack_id])
    assert sorted(plan.keep) == sorted([mostly_live.pack_id, young.pack_id])
    carried = [e.sha256 for _, e in plan.carry]
    assert sorted(carried) == sorted([f["c"], f["h"]])  # c carried once although in two rewritten packs
    assert all(isinstance(e, PackEntry) and indexes[src].find(e.sha256) == e for src, e in plan.carry)
    assert plan.freed_bytes == 200 + 200 + 200 - 20
    # a live fragment held by a kept pack, or loose, is not carried
    plan = plan_repack(indexes, live, threshold=0.5, elsewhere={f["c"]})
    assert [e.sha256 for _, e in plan.carry] == [f["h"]]
    plan = plan_repack(indexes, live | {f["j"]}, threshold=0.99)
    assert sorted(plan.rewrite) == [] and young.pack_id in plan.keep and dead.pack_id in plan.drop
    # threshold 0: any dead byte triggers a rewrite; 1: never
    assert mostly_live.pack_id in plan_repack(indexes, live, threshold=0.0).rewrite
    assert plan_repack(indexes, live, threshold=1.0).rewrite == []


def test_repack_threshold_is_checked_and_empty_packs_count_by_rows() -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        plan_repack({}, set(), threshold=1.5)
    with pytest.raises(UsageError):
        plan_repack({}, set(), threshold=-0.1)
    empty_only = _ix("e", [(EMPTY_SHA256, 0)])
    assert plan_repack({empty_only.pack_id: empty_only}, {EMPTY_SHA256}).keep == [empty_only.pack_id]


# -- properties ---------------------------------------------------------------------------------------
FRAGMENTS = st.lists(st.binary(max_size=200), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    blobs=FRAGMENTS,
    extra=FRAGMENTS,
    target=st.integers(1, 600),
    pick=st.data(),
    max_gap=st.integers(0, 400),
    whole=st.floats(0.0, 1.0),
    max_request=st.one_of(st.none(), st.integers(1, 500)),
)
def test_pack_plan_split_returns_exactly_the_needed_fragments(
    tmp_path_factory: pytest.TempPathFactory, blobs: list[bytes], extra: list[bytes], target: int,
    pick: st.DataObject, max_gap: int, whole: float, max_request: int | None,
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    # two pushes: some fragments land in packs of both
    groups = [blobs, extra + blobs[: len(blobs) // 2]]
    built: list[BuiltPack] = []
    for n, group in enumerate(groups):
        src = [(sha(b), len(b), bytes_opener(b)) for b in group]
        built += build_packs(src, tmp / str(n), target_size=target)
    data = {p.pack_id: p.path.read_bytes() for p in built}
    indexes = {p.pack_id: p.index for p in built}
    for p in built:
        assert p.pack_id == sha(data[p.pack_id]) and check_pack(io.BytesIO(data[p.pack_id]), p.index).ok
    known = {sha(b): b for b in blobs + extra}
    needed = pick.draw(st.sets(st.sampled_from(sorted(known))))
    needed |= pick.draw(st.sets(st.sampled_from([sha(b"absent-1"), sha(b"absent-2")])))
    plan = plan_fetch({d: len(known.get(d, b"?")) for d in needed}, indexes, max_gap=max_gap,
                      whole_fraction=whole, max_request=max_request)
    got: dict[str, bytes] = {d: b"" for d in plan.local}
    for read in plan.reads:
        for rng in read.ranges:
            assert 0 <= rng.start < rng.end <= len(data[read.pack_id]) or rng.start == rng.end
            stream = io.BytesIO(data[read.pack_id][rng.start:rng.end])
            for d, frag in split_range(stream, read.pack_id, rng):
                assert d not in got
                got[d] = frag
    assert got == {d: known[d] for d in needed if d in known}
    assert set(plan.missing) == {d for d in needed if d not in known}
    assert plan.mismatched == []


@settings(max_examples=60, deadline=None)
@given(
    packs=st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True), min_size=1, max_size=6),
    live=st.sets(st.integers(0, 30)),
    loose=st.sets(st.integers(0, 30)),
    threshold=st.floats(0.0, 1.0),
)
def test_repack_keeps_every_live_fragment_reachable(packs: list[list[int]], live: set[int], loose: set[int],
                                                    threshold: float) -> None:
    digest = {i: sha(str(i).encode()) for i in range(31)}
    indexes = {}
    for n, members in enumerate(packs):
        ix = _ix(f"pack{n}", [(digest[i], i + 1) for i in members])
        indexes[ix.pack_id] = ix
    live_d = {digest[i] for i in live}
    loose_d = {digest[i] for i in loose}
    plan = plan_repack(indexes, live_d, threshold=threshold, elsewhere=loose_d)
    assert sorted(plan.drop + plan.rewrite + plan.keep) == sorted(indexes)
    before = {e.sha256 for ix in indexes.values() for e in ix} | loose_d
    after = {e.sha256 for pid in plan.keep for e in indexes[pid]} | loose_d | {e.sha256 for _, e in plan.carry}
    assert (live_d & before) <= after
    carried = [e.sha256 for _, e in plan.carry]
    assert len(carried) == len(set(carried)) and not set(carried) & loose_d
    for pid in plan.drop:
        assert not {e.sha256 for e in indexes[pid]} & live_d
