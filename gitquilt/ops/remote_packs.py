"""What a remote holds in packs: its listing of ``packs/`` and the indexes of its packs.

Push, fetch, ``verify --remote`` and ``gc --remote`` all start here. Which packs a
remote holds is learned by listing ``packs/`` (one key per pack); the index of each
complete pack (one that has an index) comes from the local index cache
(:class:`gitquilt.packcache.PackIndexCache`, shared by every remote: a pack's index
never changes) or, the first time, from the remote — validated before it is kept.
An index that is hostile or that disagrees with its pack's listed size is ignored with
a warning: the pack is treated as absent, so at worst something is sent again.

Pack settings are per remote (``.gitquilt.toml``, ``[remotes.NAME]``):
``pack_threshold`` (fragments smaller than this travel in packs; ``0`` turns packing
off) and ``pack_size`` (the target size of a pack).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitquilt.errors import ConfigError, FormatError
from gitquilt.ops.parallel import parallel_map
from gitquilt.ops.transfer_exec import RetryPolicy, call_with_retries, list_with_retries
from gitquilt.packcache import PackIndexCache
from gitquilt.packplan import locate
from gitquilt.packs import (
    DEFAULT_TARGET_SIZE,
    DEFAULT_THRESHOLD,
    PACKS_PREFIX,
    PackIndex,
    PackListing,
    index_key,
    survey_listing,
)
from gitquilt.remotes import ObjectMissing, Remote, parse_size

#: An index larger than this is refused unread (a 64 MiB pack of 1 KiB files has a ~3 MB index).
MAX_INDEX_BYTES = 256 << 20
#: How long a survey may be reused by fetches of single fragments (``fetch_digests``).
SURVEY_TTL = 30.0


@dataclass(frozen=True)
class PackSettings:
    """How a push packs small fragments (``threshold`` 0: every fragment goes up loose)."""

    threshold: int = DEFAULT_THRESHOLD
    target_size: int = DEFAULT_TARGET_SIZE

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    @classmethod
    def from_options(cls, options: Mapping[str, Any], name: str = "") -> PackSettings:
        """Read ``pack_threshold`` and ``pack_size`` from a remote's options."""
        where = f"remote {name!r}: " if name else ""
        raw = options.get("pack_threshold", DEFAULT_THRESHOLD)
        if (isinstance(raw, int) and not isinstance(raw, bool) and raw == 0) or raw in ("0", "off"):
            threshold = 0
        else:
            threshold = parse_size(raw, f"{where}pack_threshold")
        target = parse_size(options.get("pack_size", DEFAULT_TARGET_SIZE), f"{where}pack_size")
        if threshold and target < threshold:
            raise ConfigError(f"{where}pack_size ({target} bytes) must be at least pack_threshold ({threshold} bytes)")
        return cls(threshold, target)


#: Packing off: the layout before issue 4 (every fragment a loose object).
LOOSE = PackSettings(threshold=0)


@dataclass
class RemotePacks:
    """The packs of one remote, as one listing showed them."""

    url: str
    listing: PackListing = field(default_factory=PackListing)
    #: Complete packs whose index was read and checked: pack id -> index.
    indexes: dict[str, PackIndex] = field(default_factory=dict)
    #: Index downloads this survey made (the others came from the local cache).
    fetched: int = 0
    taken: float = 0.0  # time.monotonic() of the listing

    def present(self, sizes: Mapping[str, int]) -> dict[str, str]:
        """Of ``sizes`` (digest -> size), the digests some pack holds with that length: digest -> pack id."""
        out: dict[str, str] = {}
        for digest, places in locate(sizes, self.indexes).items():
            for pid, row in places:
                if self.indexes[pid].lengths[row] == sizes[digest]:
                    out[digest] = pid
                    break
        return out

    def holding(self, digests: Iterable[str]) -> dict[str, list[str]]:
        """Pack ids holding each of ``digests`` (only those held somewhere)."""
        return {d: [pid for pid, _ in places] for d, places in locate(digests, self.indexes).items()}

    def without(self, pack_ids: Iterable[str]) -> dict[str, PackIndex]:
        """The indexes minus some packs (a fetch retrying elsewhere after a bad copy)."""
        drop = set(pack_ids)
        return {pid: ix for pid, ix in self.indexes.items() if pid not in drop}


def index_cache(cache_root: Path) -> PackIndexCache:
    """The local cache of pack indexes beside a store's objects."""
    return PackIndexCache(cache_root)


def survey_packs(remote: Remote, cache_root: Path, jobs: int, policy: RetryPolicy | None = None,
                 warn: Callable[[str], None] | None = None) -> RemotePacks:
    """List ``packs/`` and load the index of every complete pack (downloading those not cached)."""
    policy = policy or RetryPolicy()
    warn = warn or (lambda _m: None)
    out = RemotePacks(remote.url, taken=time.monotonic())
    out.listing = survey_listing(list_with_retries(remote, PACKS_PREFIX, policy))
    if out.listing.ignored:
        shown = ", ".join(repr(k[:90]) for k in out.listing.ignored[:3])
        warn(f"ignoring {len(out.listing.ignored)} object(s) under packs/ on {remote.url} that are not packs: {shown}")
    complete = out.listing.complete
    if not complete:
        return out
    cache = index_cache(cache_root)
    out.indexes = cache.load_many(complete)
    todo = [pid for pid in complete if pid not in out.indexes]

    def one(pid: str) -> tuple[str, PackIndex | None, str | None]:
        key = index_key(pid)
        try:
            data = call_with_retries(lambda: _read_index(remote, key), policy)
        except ObjectMissing:
            return pid, None, None  # deleted since the listing (gc): the pack goes with it
        if len(data) > MAX_INDEX_BYTES:
            return pid, None, f"{key} on {remote.url} is larger than {MAX_INDEX_BYTES} bytes"
        try:
            return pid, cache.add_bytes(data, pid, f"{key} on {remote.url}:"), None
        except FormatError as exc:
            return pid, None, str(exc)

    for pid, index, problem in parallel_map(one, todo, min(jobs, max(1, len(todo)))):
        if index is not None:
            out.indexes[pid] = index
            out.fetched += 1
        elif problem is not None:
            warn(f"ignoring pack {pid[:12]}: {problem}")
    for pid in sorted(out.indexes):
        listed = out.listing.packs[pid][0]
        if out.indexes[pid].pack_size != listed:
            warn(f"ignoring pack {pid[:12]} on {remote.url}: it holds {listed} bytes, its index says "
                 f"{out.indexes[pid].pack_size}")
            del out.indexes[pid]
    return out


def _read_index(remote: Remote, key: str) -> bytes:
    with contextlib.closing(remote.get(key)) as body:
        data: bytes = body.read(MAX_INDEX_BYTES + 1)
        return data


# -- reuse by many small fetches --------------------------------------------------------------
_RECENT: dict[str, RemotePacks] = {}
_RECENT_LOCK = threading.Lock()


def recent_survey(remote: Remote, cache_root: Path, jobs: int, policy: RetryPolicy | None,
                  warn: Callable[[str], None] | None, wanted: Iterable[str], max_age: float | None = None) -> RemotePacks:
    """A survey of this remote younger than ``max_age`` that locates all of ``wanted``, or a fresh one.

    Lets a reader that fetches single fragments on demand (the Python API) list
    ``packs/`` once per burst rather than once per fragment. A digest the old survey
    cannot place makes a fresh one (a pack pushed since), so nothing is missed.
    """
    key = f"{remote.url}\0{cache_root}"
    with _RECENT_LOCK:
        old = _RECENT.get(key)
    if old is not None and time.monotonic() - old.taken < (SURVEY_TTL if max_age is None else max_age):
        wanted = list(wanted)
        if len(old.holding(wanted)) == len(set(wanted)):
            return old
    fresh = survey_packs(remote, cache_root, jobs, policy, warn)
    with _RECENT_LOCK:
        _RECENT[key] = fresh
    return fresh


def forget_survey(remote: Remote) -> None:
    """Drop reusable surveys of ``remote`` (after a read found a pack gone)."""
    with _RECENT_LOCK:
        for key in [k for k in _RECENT if k.startswith(f"{remote.url}\0")]:
            del _RECENT[key]
