"""Small-file packs: how remotes carry many small fragments in few objects (docs/FORMAT.md "Packs").

A pack is fragments back to back; its name is the SHA-256 of its bytes. Its index
(``packs/<id>.idx``, Parquet, encoded by :mod:`gitquilt.manifest_io`) lists each
fragment's sha256, offset and length, and goes up only after its pack. This module is
the format's pure logic (stdlib only, no network, no pyarrow): keys, the index as a
value (:class:`PackIndex`), building packs into temporary files (:func:`build_packs`,
:class:`PackWriter`) and sorting a listing of ``packs/`` (:func:`survey_listing`).
Reading packs and planning gc live in :mod:`gitquilt.packplan`; the local cache of
indexes in :mod:`gitquilt.packcache`.
"""

from __future__ import annotations

import hashlib
import io
import os
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, Self, TypeVar

from gitquilt import fsutil
from gitquilt.digest import BLOCK_SIZE, check_digest, expect_digest, is_digest
from gitquilt.errors import FormatError, IntegrityError, QuiltError, UsageError

MiB = 1 << 20
KiB = 1 << 10
#: Fragments smaller than this travel in packs; the others stay loose objects.
DEFAULT_THRESHOLD = 1 * MiB
#: A pack is closed before a fragment would take it past this size.
DEFAULT_TARGET_SIZE = 64 * MiB
#: Needed byte ranges of one pack separated by at most this many bytes are fetched in one GET.
DEFAULT_MAX_GAP = 64 * KiB
#: When the ranges to fetch cover more than this fraction of a pack, fetch the whole pack.
DEFAULT_WHOLE_FRACTION = 0.5
#: gc rewrites a pack when more than this fraction of its bytes is dead.
DEFAULT_REPACK_THRESHOLD = 0.5

PACKS_PREFIX = "packs/"
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx"

T = TypeVar("T")
Opener = Callable[[], BinaryIO]


# -- keys ---------------------------------------------------------------------------------
def pack_key(pack_id: str) -> str:
    """Remote key of a pack: ``packs/<id>.pack``."""
    return f"{PACKS_PREFIX}{pack_id}{PACK_SUFFIX}"


def index_key(pack_id: str) -> str:
    """Remote key of a pack's index: ``packs/<id>.idx``."""
    return f"{PACKS_PREFIX}{pack_id}{INDEX_SUFFIX}"


def parse_pack_key(key: str) -> tuple[str, str] | None:
    """``("pack", id)`` or ``("index", id)`` for a well-formed key under ``packs/``, else None."""
    if not key.startswith(PACKS_PREFIX):
        return None
    name = key[len(PACKS_PREFIX):]
    for kind, suffix in (("pack", PACK_SUFFIX), ("index", INDEX_SUFFIX)):
        if name.endswith(suffix) and is_digest(name[: -len(suffix)]):
            return kind, name[: -len(suffix)]
    return None


# -- the index ------------------------------------------------------------------------------
class PackEntry(NamedTuple):
    """One fragment of a pack: its bytes are ``pack[offset : offset + length]``."""

    sha256: str
    offset: int
    length: int


def _row_of(digests: bytes | bytearray, sha256: str) -> int | None:
    """Row of ``sha256`` among 32-byte raw digests (C-speed search, aligned hits only)."""
    raw = bytes.fromhex(sha256)
    pos = digests.find(raw)
    while pos >= 0:
        if pos % 32 == 0:
            return pos // 32
        pos = digests.find(raw, pos + 1)
    return None


class PackIndex:
    """The rows of one pack's index, stored column-wise (48 bytes a row).

    Construct it from a validated source: :func:`gitquilt.manifest_io.read_pack_index_bytes`
    (``PackIndex(*columns)``), :class:`PackWriter`, or :meth:`from_entries` (which checks).
    Rows are in offset order, back to back from 0 to ``pack_size``.
    """

    __slots__ = ("digests", "lengths", "offsets", "pack_id", "pack_size")

    def __init__(self, pack_id: str, pack_size: int, digests: bytes, offsets: array[int], lengths: array[int]) -> None:
        self.pack_id = pack_id
        self.pack_size = pack_size
        self.digests = bytes(digests)  # 32 raw bytes a row
        self.offsets = offsets
        self.lengths = lengths

    @classmethod
    def from_entries(cls, pack_id: str, pack_size: int, entries: Iterable[tuple[str, int, int]]) -> PackIndex:
        """Build and check an index (the rules of docs/FORMAT.md; FormatError when broken)."""
        where = f"pack index {str(pack_id)[:12]}"
        check_digest(pack_id, "pack id")
        digests = bytearray()
        offsets, lengths = array("q"), array("q")
        seen: set[str] = set()
        end = 0
        for sha, offset, length in entries:
            if not is_digest(sha):
                raise FormatError(f"{where}: fragment hash {str(sha)[:80]!r} is not 64 lowercase hex characters")
            if length < 0:
                raise FormatError(f"{where}: negative length {length} for fragment {sha}")
            if offset != end:
                raise FormatError(f"{where}: fragment {sha} starts at offset {offset}, not {end}: "
                                  "fragments must lie back to back")
            if sha in seen:
                raise FormatError(f"{where}: fragment {sha} is listed twice")
            seen.add(sha)
            digests += bytes.fromhex(sha)
            offsets.append(offset)
            lengths.append(length)
            end = offset + length
        if not offsets:
            raise FormatError(f"{where}: lists no fragments")
        if end != pack_size:
            raise FormatError(f"{where}: fragments end at byte {end}, but the pack holds {pack_size}")
        return cls(pack_id, pack_size, bytes(digests), offsets, lengths)

    def __len__(self) -> int:
        return len(self.offsets)

    def sha256(self, i: int) -> str:
        return self.digests[32 * i: 32 * i + 32].hex()

    def __getitem__(self, i: int) -> PackEntry:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return PackEntry(self.sha256(i), self.offsets[i], self.lengths[i])

    def __iter__(self) -> Iterator[PackEntry]:
        d, offs, lens = self.digests, self.offsets, self.lengths
        for i in range(len(offs)):
            yield PackEntry(d[32 * i: 32 * i + 32].hex(), offs[i], lens[i])

    def row_of(self, sha256: str) -> int | None:
        """The row holding ``sha256`` (a C-speed scan of the raw digests), or None."""
        return _row_of(self.digests, sha256)

    def find(self, sha256: str) -> PackEntry | None:
        """The entry of ``sha256`` in this pack, or None."""
        i = self.row_of(sha256)
        return None if i is None else self[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PackIndex):
            return NotImplemented
        return (self.pack_id, self.pack_size, self.digests, self.offsets, self.lengths) == (
            other.pack_id, other.pack_size, other.digests, other.offsets, other.lengths)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackIndex({self.pack_id[:12]}…, {self.pack_size} bytes, {len(self)} fragments)"


# -- building -----------------------------------------------------------------------------
def bytes_opener(data: bytes) -> Opener:
    """An opener for fragment bytes already in memory (e.g. carried out of an old pack by gc)."""
    return lambda: io.BytesIO(data)


def is_packable(size: int, threshold: int = DEFAULT_THRESHOLD) -> bool:
    """True when a fragment of ``size`` bytes travels in a pack (it is smaller than the threshold)."""
    return size < threshold


def partition_by_size(items: Iterable[T], size_of: Callable[[T], int],
                      threshold: int = DEFAULT_THRESHOLD) -> tuple[list[T], list[T]]:
    """Split ``items`` (order kept) into (packable, loose) by the threshold rule."""
    small: list[T] = []
    large: list[T] = []
    for item in items:
        (small if is_packable(size_of(item), threshold) else large).append(item)
    return small, large


@dataclass(frozen=True)
class BuiltPack:
    """A finished pack in a temporary file: upload ``path`` as ``key``, then the index, then :meth:`remove`."""

    pack_id: str
    path: Path
    size: int
    index: PackIndex

    @property
    def key(self) -> str:
        return pack_key(self.pack_id)

    @property
    def index_key(self) -> str:
        return index_key(self.pack_id)

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def remove(self) -> None:
        """Delete the temporary file (absent is fine)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class PackWriteError(OSError):
    """The pack's own file could not be written (full disk, permissions): never the
    fault of the fragment being added, so :func:`build_packs` does not blame one."""


class PackWriter:
    """Streams fragments into one pack in a temporary file, hashing the pack on the way.

    Memory stays bounded: fragment bytes pass through a 1 MiB buffer; only the index
    rows (48 bytes each) are kept. A fragment that fails (short or wrong bytes) is cut
    off again, so the writer stays usable. The temporary name carries the pid, so
    :meth:`gitquilt.store.Store.clean_tmp` removes what a killed process left behind.
    """

    def __init__(self, tmp_dir: Path, verify: bool = True, buffer_size: int = MiB) -> None:
        self.path = Path(tmp_dir) / fsutil.tmp_name("pack")
        self._view = memoryview(bytearray(BLOCK_SIZE))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PackWriteError(exc.errno, exc.strerror, str(self.path)) from None
        self._file = os.fdopen(fd, "wb", buffering=buffer_size)
        self._hash = hashlib.sha256()
        self._verify = verify
        self._digests = bytearray()
        self._offsets = array("q")
        self._lengths = array("q")
        self._seen: set[str] = set()
        self.size = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._offsets)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._seen

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._closed:
            self.abort()

    def add(self, sha256: str, size: int, source: BinaryIO) -> PackEntry:
        """Append ``size`` bytes of ``source`` as fragment ``sha256`` (checked unless ``verify=False``).

        A fragment already in this pack is not written again. Raises IntegrityError when
        the source is short or (with verify) does not hash to ``sha256``.
        """
        if self._closed:
            raise ValueError("pack writer is closed")
        check_digest(sha256, "fragment hash")
        if size < 0:
            raise ValueError(f"negative size {size} for fragment {sha256}")
        if sha256 in self._seen:
            i = _row_of(self._digests, sha256)
            assert i is not None
            return PackEntry(sha256, self._offsets[i], self._lengths[i])
        offset = self.size
        saved = self._hash.copy()
        frag = hashlib.sha256() if self._verify else None
        left = size
        # one buffer for every fragment: a fresh bytes object per read costs page faults
        # (freed memory goes back to the system and comes back zeroed) — more than the copy
        readinto = getattr(source, "readinto", None)
        view = self._view
        try:
            while left:
                if readinto is not None:
                    n = readinto(view[: min(len(view), left)])
                    chunk = view[:n] if n else b""
                else:
                    chunk = source.read(min(BLOCK_SIZE, left))
                if not chunk:
                    raise IntegrityError(f"fragment {sha256}: expected {size} bytes, got {size - left} (packing)")
                if frag is not None:
                    frag.update(chunk)
                self._hash.update(chunk)
                try:
                    self._file.write(chunk)
                except OSError as exc:
                    raise PackWriteError(exc.errno, exc.strerror, str(self.path)) from None
                left -= len(chunk)
            if frag is not None:
                expect_digest(frag.hexdigest(), sha256, size, f"fragment {sha256} (packing)")
        except BaseException:
            self._hash = saved
            try:
                self._file.truncate(offset)  # flushes the buffer first
                self._file.seek(offset)
            except OSError as exc:
                raise PackWriteError(exc.errno, exc.strerror, str(self.path)) from None
            raise
        self.size += size
        self._seen.add(sha256)
        self._digests += bytes.fromhex(sha256)
        self._offsets.append(offset)
        self._lengths.append(size)
        return PackEntry(sha256, offset, size)

    def finish(self) -> BuiltPack:
        """Close the file and return the pack (at least one fragment is needed)."""
        if self._closed:
            raise ValueError("pack writer is closed")
        if not self._offsets:
            self.abort()
            raise ValueError("a pack needs at least one fragment")
        self._closed = True
        try:
            self._file.close()
        except OSError as exc:
            raise PackWriteError(exc.errno, exc.strerror, str(self.path)) from None
        pack_id = self._hash.hexdigest()
        index = PackIndex(pack_id, self.size, bytes(self._digests), self._offsets, self._lengths)
        return BuiltPack(pack_id, self.path, self.size, index)

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if not self._closed:
            self._closed = True
            try:
                self._file.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def build_packs(fragments: Iterable[tuple[str, int, Opener]], tmp_dir: Path,
                target_size: int = DEFAULT_TARGET_SIZE, *, verify: bool = True,
                on_error: Callable[[str, QuiltError], None] | None = None) -> Generator[BuiltPack, None, None]:
    """Pack ``(sha256, size, opener)`` fragments, in the order given, into packs of about ``target_size``.

    A pack is closed before a fragment would take it past ``target_size`` (a fragment
    larger than that gets a pack of its own). Duplicates are packed once. Packs are
    yielded one at a time as soon as they are complete, so the caller can upload one
    while the next is built; the caller owns each yielded :class:`BuiltPack` (remove it
    after upload). The same fragments in the same order give byte-identical packs, so a
    rerun after a crash rebuilds packs the remote already holds under the same names.
    With ``on_error``, a fragment that cannot be read or fails its hash is reported there
    and left out; without it the error propagates (the partial pack is deleted).
    """
    if target_size <= 0:
        raise UsageError(f"pack target size must be positive, not {target_size}")
    Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    writer: PackWriter | None = None
    try:
        for sha, size, opener in fragments:
            if sha in seen:
                continue
            if writer is not None and len(writer) and writer.size + size > target_size:
                built, writer = writer.finish(), None
                yield built
            if writer is None:
                writer = PackWriter(tmp_dir, verify=verify)
            try:
                with opener() as source:
                    writer.add(sha, size, source)
            except PackWriteError:
                raise
            except (QuiltError, OSError) as exc:
                if on_error is None:
                    raise
                err = exc if isinstance(exc, QuiltError) else IntegrityError(f"fragment {sha}: cannot read it: {exc}")
                on_error(sha, err)
                continue
            seen.add(sha)
        if writer is not None and len(writer):
            built, writer = writer.finish(), None
            yield built
    finally:
        if writer is not None:
            writer.abort()


# -- listing --------------------------------------------------------------------------------
@dataclass
class PackListing:
    """What a listing of ``packs/`` shows: id -> (size, mtime) of each pack file and index file."""

    packs: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    indexes: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # keys that are not ours

    @property
    def complete(self) -> list[str]:
        """Packs that have an index: the only ones readers use."""
        return sorted(p for p in self.packs if p in self.indexes)

    @property
    def orphans(self) -> list[str]:
        """Packs without an index (a push killed between the two puts): gc removes them after the grace period."""
        return sorted(p for p in self.packs if p not in self.indexes)

    @property
    def dangling(self) -> list[str]:
        """Indexes without a pack (should never happen): readers ignore them, gc removes them."""
        return sorted(i for i in self.indexes if i not in self.packs)


def survey_listing(infos: Iterable[tuple[str, int] | tuple[str, int, float | None]]) -> PackListing:
    """Sort a listing of ``packs/`` (``ObjectInfo`` or ``(key, size[, mtime])``) into a :class:`PackListing`."""
    out = PackListing()
    for info in infos:
        key, size = info[0], info[1]
        mtime = info[2] if len(info) > 2 else None
        parsed = parse_pack_key(key)
        if parsed is None:
            out.ignored.append(key)
        elif parsed[0] == "pack":
            out.packs[parsed[1]] = (size, mtime)
        else:
            out.indexes[parsed[1]] = (size, mtime)
    return out
