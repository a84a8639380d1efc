"""Build manifests the way an attacker would: straight with pyarrow, bypassing every check.

The top hash is computed here from the canonical text v1 (docs/FORMAT.md) written out
by hand, so a hostile manifest hashes correctly to its own name and is refused for its
content, not for a hash mismatch.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Row = tuple[str, str, int, bool, str]  # key, sha256, size, executable, entry meta

COLUMNS = ("logical_key", "sha256", "size", "executable", "meta")
TYPES = (pa.string(), pa.string(), pa.int64(), pa.bool_(), pa.string())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_text(rows: Sequence[Row], meta_text: str = "{}") -> bytes:
    """Canonical text v1 of rows taken as they are (no sorting, no checks)."""
    out = [b"gitquilt-manifest 1\n", f"meta\t{meta_text}\n".encode()]
    for key, digest, size, executable, meta in rows:
        out.append(f"{key}\t{digest}\t{size}\t{'x' if executable else '-'}\t{meta}\n".encode("utf-8", "surrogatepass"))
    return b"".join(out)


def top_hash(rows: Sequence[Row], meta_text: str = "{}") -> str:
    return hashlib.sha256(canonical_text(rows, meta_text)).hexdigest()


def parquet_bytes(columns: dict[str, Any], metadata: dict[bytes, bytes] | None = None) -> bytes:
    """Write arbitrary columns (name → pa.Array or list) and key-value metadata as Parquet."""
    arrays = [c if isinstance(c, (pa.Array, pa.ChunkedArray)) else pa.array(c) for c in columns.values()]
    table = pa.Table.from_arrays(arrays, names=list(columns))
    if metadata is not None:
        table = table.replace_schema_metadata(metadata)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def hostile_manifest(
    rows: Sequence[Row],
    meta_text: str = "{}",
    extra_metadata: dict[bytes, bytes] | None = None,
) -> tuple[bytes, str]:
    """Parquet bytes holding ``rows`` exactly as given, and the top hash they hash to."""
    columns = {
        "logical_key": pa.array([r[0] for r in rows], pa.string()),
        "sha256": pa.array([r[1] for r in rows], pa.string()),
        "size": pa.array([r[2] for r in rows], pa.int64()),
        "executable": pa.array([r[3] for r in rows], pa.bool_()),
        "meta": pa.array([r[4] for r in rows], pa.string()),
    }
    metadata = {b"gitquilt.meta": meta_text.encode()}
    metadata.update(extra_metadata or {})
    return parquet_bytes(columns, metadata), top_hash(rows, meta_text)


def row(key: str, data: bytes, executable: bool = False, meta: str = "{}") -> Row:
    """An entry for ``data`` under ``key``."""
    return (key, sha(data), len(data), executable, meta)


# -- planting packages into a repository's cache, and checking nothing moved ------------------

def cache_root(repo_root: Path) -> Path:
    """The default cache of a repository (DESIGN.md: ``<git common dir>/quilt``)."""
    return repo_root / ".git" / "quilt"


def plant(
    repo_root: Path,
    package: str,
    files: Sequence[tuple[str, bytes]],
    parquet: bytes | None = None,
    top: str | None = None,
    meta_text: str = "{}",
) -> str:
    """Put a manifest straight into the cache (no validation), its fragments, and a pointer.

    ``files`` are (key, bytes) entries stored in the given order; ``parquet``/``top``
    replace the generated manifest. Returns the top hash the pointer names.
    """
    from gitquilt.pointer import Pointer
    from gitquilt.store import Store

    store = Store(cache_root(repo_root)).ensure()
    for _key, data in files:
        store.put_bytes(data)
    rows = [row(k, d) for k, d in files]
    if parquet is None:
        parquet, computed = hostile_manifest(rows, meta_text)
        top = top or computed
    assert top is not None
    (store.manifests / f"{top}.parquet").write_bytes(parquet)
    name = package.rpartition("/")[2]
    pointer = Pointer(name, top, len(rows), sum(r[2] for r in rows)).to_bytes()
    (repo_root / f"{package}.quilt").write_bytes(pointer)
    return top


def snapshot(base: Path) -> dict[str, object]:
    """Every path below ``base`` with its type, mode and content; inside a ``.git`` directory
    only ``hooks/`` and ``config`` are recorded (locks and caches may change there)."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base)
        if rel_dir.name == ".git":
            dirnames[:] = [d for d in dirnames if d == "hooks"]
            filenames = [f for f in filenames if f == "config"]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(rel_dir / name)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_ino, p.read_bytes())
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return out


@dataclass
class World:
    """A repository shared by the tests of one module (see conftest.py ``shared``)."""

    root: Path

    @property
    def base(self) -> Path:
        """The directory holding the repository and the ``outside`` directory."""
        return self.root.parent

    def quilt(self, *args: str) -> tuple[int, str, str]:
        """Run the CLI in-process (the code the executable runs): (exit code, stdout, stderr)."""
        from gitquilt.cli.main import run

        out, err = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                rc = run(list(args))
        finally:
            os.chdir(cwd)
        return rc, out.getvalue(), err.getvalue()
