"""The local cache of pack indexes: ``<cache>/packs/<pack id>.idx``.

A pack's index never changes (the pack is named by its bytes), so a client downloads
each index once and keeps it. The cache is shared by every remote: which packs a
remote holds comes from listing its ``packs/`` (cheap: one key per pack), and the
indexes of the listed packs come from here, fetching only those not seen before.
Every file is validated again when loaded (a damaged one is removed and reported as
absent, so the caller fetches it anew); writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from gitquilt import fsutil
from gitquilt.digest import check_digest, is_digest
from gitquilt.errors import FormatError
from gitquilt.packs import INDEX_SUFFIX, PackIndex

PACKS_DIR = "packs"


def encode_index(index: PackIndex) -> bytes:
    """The Parquet bytes of ``index`` (what goes up as ``packs/<id>.idx``)."""
    from gitquilt.manifest_io import pack_index_to_bytes

    return pack_index_to_bytes(index, index.pack_id, index.pack_size)


def decode_index(data: bytes, pack_id: str, where: str = "pack index") -> PackIndex:
    """Validate and decode an index named ``pack_id`` (FormatError when it is hostile or damaged)."""
    from gitquilt.manifest_io import read_pack_index_bytes

    return PackIndex(*read_pack_index_bytes(data, pack_id, where))


class PackIndexCache:
    """Indexes a client has seen, one file each under ``<cache root>/packs/``."""

    def __init__(self, cache_root: Path, durable: bool = False) -> None:
        self.dir = Path(cache_root) / PACKS_DIR
        #: fsync each file; off by default: a lost index is refetched, never trusted unchecked.
        self.durable = durable

    def path(self, pack_id: str) -> Path:
        return self.dir / f"{check_digest(pack_id, 'pack id')}{INDEX_SUFFIX}"

    def has(self, pack_id: str) -> bool:
        return self.path(pack_id).is_file()

    def ids(self) -> set[str]:
        """Ids of the cached indexes (stray names are ignored)."""
        return set(self._iter_ids())

    def _iter_ids(self) -> Iterator[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(INDEX_SUFFIX) and is_digest(name[: -len(INDEX_SUFFIX)]):
                yield name[: -len(INDEX_SUFFIX)]

    def missing(self, pack_ids: Iterable[str]) -> list[str]:
        """The ids among ``pack_ids`` with no cached index, sorted."""
        have = self.ids()
        return sorted(set(pack_ids) - have)

    def add_bytes(self, data: bytes, pack_id: str, where: str = "pack index") -> PackIndex:
        """Validate ``data`` as the index of ``pack_id`` (downloaded from a remote), then keep it."""
        index = decode_index(data, pack_id, where)
        self._write(pack_id, data)
        return index

    def add(self, index: PackIndex) -> None:
        """Keep an index this client built itself (a push that just uploaded its pack)."""
        self._write(index.pack_id, encode_index(index))

    def _write(self, pack_id: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write_bytes(self.path(pack_id), data, durable=self.durable)

    def load(self, pack_id: str) -> PackIndex | None:
        """The cached index of ``pack_id``; None when absent or damaged (a damaged file is removed)."""
        from gitquilt.manifest_io import read_pack_index_file

        path = self.path(pack_id)
        if not path.is_file():
            return None
        try:
            return PackIndex(*read_pack_index_file(str(path), pack_id, "cached pack index"))
        except FormatError:
            self.remove(pack_id)
            return None

    def load_many(self, pack_ids: Iterable[str]) -> dict[str, PackIndex]:
        """The cached indexes among ``pack_ids`` (absent or damaged ones are left out)."""
        out = {}
        for pid in sorted(set(pack_ids)):
            index = self.load(pid)
            if index is not None:
                out[pid] = index
        return out

    def remove(self, pack_id: str) -> None:
        """Forget one index (absent is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(pack_id))
