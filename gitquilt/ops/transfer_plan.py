"""Transfer planning: what a push must upload and a fetch must download.

Planning is separate from execution (ops/transfer_exec.py, ops/transfer_packs.py).
What the remote holds comes from two sources: the indexes of its packs (listing
``packs/`` once; the indexes themselves are cached locally, they never change) and a
survey of its loose objects for whatever no pack holds. What a push must send is split
by size: small fragments go into packs, in logical-key order so that a package's files
travel together; the others go up loose, largest first.

What the remote holds is learned by *listing*, not by one request per object: the
first page of ``objects/sha256/`` (1,000 keys) also tells how big the remote is —
fragment names are uniform hashes, so the last key's position in the hash space gives
the fraction listed — and the planner then lists the rest (16 key ranges in parallel)
or, when the remote is far larger than the push, asks for the few objects one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gitquilt.errors import MissingFragments
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.remote_packs import LOOSE, PackSettings, RemotePacks, survey_packs
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, list_with_retries
from gitquilt.remotes import OBJECTS_PREFIX, ObjectInfo, Remote, fragment_key, manifest_key, parse_key
from gitquilt.store import Store

#: Up to this many objects, ask for each one (HEAD) instead of listing.
HEAD_LIMIT = 32
#: Keys in one listing page (S3's maximum; the first page is used to size the remote).
PAGE = 1000
HEX = "0123456789abcdef"


@dataclass
class Inventory:
    """What the remote holds of the objects a transfer asked about."""

    fragments: dict[str, int] = field(default_factory=dict)  # digest -> size on the remote
    manifests: set[str] = field(default_factory=set)
    strategy: str = ""
    ignored: list[str] = field(default_factory=list)  # listed keys that are not ours


@dataclass
class PushPlan:
    """The uploads a push needs, in order: fragments, then the manifests that name them."""

    tops: list[str]
    fragments: list[tuple[str, int]] = field(default_factory=list)  # loose: (digest, size), largest first
    packed: list[tuple[str, int]] = field(default_factory=list)  # into packs: (digest, size), logical-key order
    packs: RemotePacks | None = None  # what the remote holds in packs (None: nothing to survey)
    repair: set[str] = field(default_factory=set)  # on the remote with the wrong size: overwrite
    manifests: list[str] = field(default_factory=list)
    needs: dict[str, set[str]] = field(default_factory=dict)  # top -> digests this push uploads for it
    present_manifests: int = 0
    present_fragments: int = 0
    present_bytes: int = 0
    inventory: Inventory = field(default_factory=Inventory)

    @property
    def bytes(self) -> int:
        return sum(s for _, s in self.fragments) + sum(s for _, s in self.packed)

    @property
    def uploads(self) -> int:
        """Fragments to send, loose or packed."""
        return len(self.fragments) + len(self.packed)


@dataclass
class FetchPlan:
    """The downloads a fetch needs (manifests are fetched before planning fragments)."""

    fragments: list[tuple[str, int]] = field(default_factory=list)
    present_fragments: int = 0
    present_bytes: int = 0

    @property
    def bytes(self) -> int:
        return sum(s for _, s in self.fragments)


# -- learning what the remote holds ----------------------------------------------------------
def survey_manifests(remote: Remote, tops: list[str], jobs: int, policy: RetryPolicy) -> set[str]:
    """The top hashes among ``tops`` whose manifest is on the remote."""
    if not tops:
        return set()
    if len(tops) <= HEAD_LIMIT:
        found = parallel_map(
            lambda t: (t, call_with_retries(lambda: remote.size(manifest_key(t)), policy)), tops, min(jobs, len(tops))
        )
        return {t for t, size in found if size is not None}
    wanted = set(tops)
    out = set()
    for info in list_with_retries(remote, "manifests/", policy):
        parsed = parse_key(info.key)
        if parsed is not None and parsed[1] in wanted:
            out.add(parsed[1])
    return out


def survey_fragments(remote: Remote, digests: Iterable[str], jobs: int, warn: Callable[[str], None],
                     policy: RetryPolicy | None = None) -> Inventory:
    """Which of ``digests`` the remote holds (and their sizes), listing where that is cheaper."""
    policy = policy or RetryPolicy()
    wanted = set(digests)
    inv = Inventory()
    if not wanted:
        inv.strategy = "none"
        return inv
    if len(wanted) <= HEAD_LIMIT:
        inv.strategy = "head"
        _head(remote, sorted(wanted), jobs, inv, policy)
        return inv
    # first page: also measures the remote
    first = list_with_retries(remote, OBJECTS_PREFIX, policy, limit=PAGE)
    _take(first, wanted, inv)
    if len(first) < PAGE:
        inv.strategy = "list"
        _report_ignored(inv, warn)
        return inv
    last = parse_key(first[-1].key)
    last_digest = last[1] if last else first[-1].key[len(OBJECTS_PREFIX):].replace("/", "")[:64]
    try:
        fraction = max(int(last_digest[:8], 16) / 0xFFFFFFFF, 1e-9)
    except ValueError:
        fraction = 1e-9
    estimated_pages = PAGE / fraction / PAGE
    remaining = [d for d in wanted if d > last_digest]
    if estimated_pages - 1 <= len(remaining):
        inv.strategy = "list"
        _list_rest(remote, first[-1].key, last_digest[0], wanted, inv, jobs, policy)
    else:
        inv.strategy = "list+head"
        _head(remote, sorted(remaining), jobs, inv, policy)
    _report_ignored(inv, warn)
    return inv


def _take(infos: Iterable[ObjectInfo], wanted: set[str], inv: Inventory) -> None:
    for info in infos:
        parsed = parse_key(info.key)
        if parsed is None or parsed[0] != "fragment":
            inv.ignored.append(info.key)
        elif parsed[1] in wanted:
            inv.fragments[parsed[1]] = info.size


def _report_ignored(inv: Inventory, warn: Callable[[str], None]) -> None:
    if inv.ignored:
        shown = ", ".join(repr(k[:90]) for k in inv.ignored[:3])
        more = f" and {len(inv.ignored) - 3} more" if len(inv.ignored) > 3 else ""
        warn(f"ignoring {len(inv.ignored)} object(s) on the remote that are not fragments: {shown}{more}")


def _head(remote: Remote, digests: list[str], jobs: int, inv: Inventory, policy: RetryPolicy) -> None:
    if not digests:
        return

    def one(d: str) -> tuple[str, int | None]:
        return d, call_with_retries(lambda: remote.size(fragment_key(d)), policy)

    for digest, size in parallel_map(one, digests, min(jobs, len(digests))):
        if size is not None:
            inv.fragments[digest] = size


def _list_rest(remote: Remote, after_key: str, first_hex: str, wanted: set[str], inv: Inventory, jobs: int,
               policy: RetryPolicy) -> None:
    """List everything after ``after_key``: one stream per leading hex digit, in parallel."""
    starts = [(f"{OBJECTS_PREFIX}{h}", after_key if h == first_hex else None) for h in HEX if h >= first_hex]

    def one(spec: tuple[str, str | None]) -> list[ObjectInfo]:
        prefix, start_after = spec
        return list_with_retries(remote, prefix, policy, start_after)

    for infos in parallel_map(one, starts, min(jobs, len(starts))):
        _take(infos, wanted, inv)


# -- plans ------------------------------------------------------------------------------------
def plan_push(cache: Store, tops: list[str], remote: Remote, jobs: int, warn: Callable[[str], None],
              policy: RetryPolicy | None = None, packing: PackSettings = LOOSE) -> PushPlan:
    """What to upload so that the remote holds every package version in ``tops``.

    A package version whose manifest is already on the remote is complete there
    (manifests go up only after all their fragments), so only the others are read
    and surveyed. Objects missing from the local cache raise :class:`MissingFragments`.
    A fragment counts as present when a complete pack holds it (with the right length)
    or it is a loose object of the right size; of the rest, those smaller than
    ``packing.threshold`` are to be packed.
    """
    policy = policy or RetryPolicy()
    tops = sorted(set(tops))
    plan = PushPlan(tops)
    on_remote = survey_manifests(remote, tops, jobs, policy)
    plan.present_manifests = len(on_remote)
    todo = [t for t in tops if t not in on_remote]
    missing: list[str] = []
    sizes: dict[str, int] = {}
    per_top: dict[str, set[str]] = {}
    for top in todo:
        if not cache.has_manifest(top):
            missing.append(manifest_key(top))
            continue
        manifest = cache.read_manifest(top)
        digests = set()
        for i in range(len(manifest)):
            d = manifest.sha256(i)
            digests.add(d)
            sizes[d] = manifest.sizes[i]
        per_top[top] = digests
    absent = cache.missing(sizes)
    missing += [fragment_key(d) for d in absent]
    if missing:
        shown = ", ".join(missing[:5]) + (f" … ({len(missing)} in all)" if len(missing) > 5 else "")
        raise MissingFragments(
            f"{len(missing)} object(s) to push are not in the local cache: {shown}; "
            "fetch them from where they were made, or re-add the package", missing,
        )
    in_packs: dict[str, str] = {}
    if sizes:
        plan.packs = survey_packs(remote, cache.root, jobs, policy, warn)
        in_packs = plan.packs.present(sizes)
    inv = survey_fragments(remote, [d for d in sizes if d not in in_packs], jobs, warn, policy)
    if plan.packs is not None and plan.packs.listing.packs:
        inv.strategy = f"packs+{inv.strategy}"
    plan.inventory = inv
    upload: dict[str, int] = {}  # in logical-key order (dict order of ``sizes``)
    for digest, size in sizes.items():
        if digest in in_packs:
            plan.present_fragments += 1
            plan.present_bytes += size
            continue
        remote_size = inv.fragments.get(digest)
        if remote_size == size:
            plan.present_fragments += 1
            plan.present_bytes += size
            continue
        if remote_size is not None:
            warn(f"{fragment_key(digest)} on the remote has {remote_size} bytes, not {size}: uploading it again")
            plan.repair.add(digest)
        upload[digest] = size
    loose = {d: s for d, s in upload.items() if not (packing.enabled and s < packing.threshold)}
    plan.packed = [(d, s) for d, s in upload.items() if d not in loose]
    plan.fragments = sorted(loose.items(), key=lambda kv: (-kv[1], kv[0]))
    plan.manifests = list(per_top)
    plan.needs = {top: {d for d in ds if d in upload} for top, ds in per_top.items()}
    return plan


def plan_fetch(cache: Store, tops: list[str]) -> FetchPlan:
    """Fragments of ``tops`` (whose manifests are in the cache) that the cache lacks."""
    sizes: dict[str, int] = {}
    for top in sorted(set(tops)):
        manifest = cache.read_manifest(top)
        for i in range(len(manifest)):
            sizes[manifest.sha256(i)] = manifest.sizes[i]
    return plan_fetch_digests(cache, sizes)


def plan_fetch_digests(cache: Store, sizes: dict[str, int]) -> FetchPlan:
    """Of these fragments (digest -> size), the ones the cache lacks, largest first."""
    absent = set(cache.missing(sizes))
    plan = FetchPlan()
    for digest, size in sizes.items():
        if digest in absent:
            plan.fragments.append((digest, size))
        else:
            plan.present_fragments += 1
            plan.present_bytes += max(size, 0)
    plan.fragments.sort(key=lambda kv: (-kv[1], kv[0]))
    return plan
