"""``git quilt add``: a directory (or one file) becomes a package."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Any

from gitquilt import fsutil
from gitquilt.errors import FormatError, QuiltError, UnsafePath, UsageError
from gitquilt.manifest import Entry, Manifest, canonical_json
from gitquilt.ops.progress import NullProgress, Progress
from gitquilt.ops.scan import Scan, fill_hashes, scan_fingerprint, scan_package
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import SUFFIX, Pointer
from gitquilt.store import OWN_WRITER_MAX_ENTRIES, encode_manifest

FILE_KIND_META = "gitquilt.kind"


@dataclass
class AddResult:
    """What ``add`` did to one package."""

    ref: PackageRef
    pointer: Pointer
    changed: bool
    staged: list[str]
    files: int
    bytes: int


def add_package(
    ws: Workspace,
    ref: PackageRef,
    message: str | None = None,
    user_meta: dict[str, Any] | None = None,
    stage: bool = True,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> AddResult:
    """Hash ``ref``'s files into the cache and write its pointer (staged unless ``stage`` is False)."""
    progress = progress or NullProgress()
    _refuse_nested(ws, ref)
    _refuse_tracked(ws, ref)
    scan = scan_package(ws, ref)
    if scan.kind == "absent":
        raise UsageError(f"{ref.path}: no such file or directory")
    if scan.symlinks:
        shown = ", ".join(f"{ref.path}/{k}" for k in sorted(scan.symlinks)[:5])
        raise UnsafePath(f"{ref.path} holds symbolic links ({shown}); gitquilt stores regular files only")
    if scan.special:
        raise UsageError(f"{ref.path} holds special files ({', '.join(sorted(scan.special)[:5])})")
    if scan.not_nfc:
        raise UsageError(
            f"{ref.path} holds file names not in Unicode NFC form ({', '.join(sorted(scan.not_nfc)[:5])}); rename them"
        )
    ws.cache.ensure()
    ws.cache.clean_tmp()
    # a crash while writing the pointer or .gitignore (kill -9) leaves a temp file beside them
    fsutil.remove_dead_tmp(ws.pointer_path(ref).parent, [ws.pointer_path(ref).name, ".gitignore"])
    meta: dict[str, Any] = {}
    if message:
        meta["message"] = message
    if user_meta:
        meta["user_meta"] = user_meta
    if scan.kind == "file":
        meta[FILE_KIND_META] = "file"
    canonical_json(meta)

    recorder: threading.Thread | None = None
    builder: _ManifestBuilder | None = None
    try:
        with ws.cache.batch() as batch:
            rows = fill_hashes(
                ws, scan, batch=batch, progress=progress, jobs=jobs, record=False,
                before_hashing=_preload_parquet if len(scan.files) > OWN_WRITER_MAX_ENTRIES else None,
            )
            if rows:  # into the stat cache (SQLite, the GIL released) while the batch's last commit syncs
                recorder = threading.Thread(target=ws.statcache.record, args=(rows,), name="gitquilt-statcache")
                recorder.start()
                # files were read, so a new manifest is likely: build and encode it while
                # the last commit syncs (it is written only after, when every fragment is durable)
                builder = _ManifestBuilder(scan, meta)
                builder.start()
    finally:
        if recorder is not None:
            recorder.join()
        if builder is not None:
            builder.join()
    pointer_file = ws.pointer_path(ref)
    old = _old_pointer(ws, ref)
    # unchanged files (the stat cache's fingerprint of the pinned manifest matches): keep
    # the pointer as it is, without building, encoding or even importing a manifest
    fingerprint = builder.fingerprint if builder is not None else scan_fingerprint(scan)
    unchanged = (
        old is not None
        and message is None
        and user_meta is None
        and ws.statcache.fingerprint(old.top_hash) == fingerprint
        and ws.cache.has_manifest(old.top_hash)
        and _same_kind(ws, old, scan)
    )
    if unchanged:
        assert old is not None
        pointer = old
        files, total = len(scan.files), sum(f.size for f in scan.files.values())
    else:
        manifest, encoded = builder.result() if builder is not None else (_build_manifest(scan, meta), None)
        top = ws.cache.put_manifest(manifest, encoded=encoded)
        ws.statcache.set_fingerprint(top, fingerprint)
        pointer = Pointer(path=ref.name, top_hash=top, files=len(manifest), bytes=manifest.total_size)
        files, total = len(manifest), manifest.total_size
    changed = False
    new_bytes = pointer.to_bytes()
    try:
        current = pointer_file.read_bytes()
    except FileNotFoundError:
        current = None
    if current != new_bytes:
        fsutil.atomic_write_bytes(pointer_file, new_bytes)
        changed = True
    gitignore_changed = ensure_ignored(ws, ref, scan.kind == "dir")
    staged: list[str] = []
    if stage:
        staged = [ref.pointer]
        if gitignore_changed or _gitignore_rel(ref) not in ws.git.index_paths_cache():
            staged.append(_gitignore_rel(ref))
        ws.git.stage(staged)
    return AddResult(ref, pointer, changed, staged, files, total)


def _build_manifest(scan: Scan, meta: dict[str, Any]) -> Manifest:
    entries = [Entry(f.key, f.sha256 or "", f.size, f.executable) for f in scan.files.values()]
    try:
        return Manifest.from_entries(entries, meta)
    except (UnsafePath, FormatError) as exc:
        raise UsageError(f"{scan.ref.path}: {exc}") from None


class _ManifestBuilder(threading.Thread):
    """Builds the package's manifest, its Parquet encoding and the files' fingerprint
    in a thread (pure computation: nothing is written)."""

    def __init__(self, scan: Scan, meta: dict[str, Any]) -> None:
        super().__init__(name="gitquilt-manifest", daemon=True)
        self.scan = scan
        self.meta = meta
        self.fingerprint = ""
        self._manifest: Manifest | None = None
        self._encoded: bytes | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fingerprint = scan_fingerprint(self.scan)
            self._manifest = _build_manifest(self.scan, self.meta)
            try:
                self._encoded = encode_manifest(self._manifest)
            except ImportError:  # no pyarrow for a large one: the store says so when it writes
                return
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by result()
            self._error = exc

    def result(self) -> tuple[Manifest, bytes | None]:
        """(manifest, Parquet bytes or None); re-raises what building raised."""
        if self._error is not None:
            raise self._error
        assert self._manifest is not None
        return self._manifest, self._encoded


def _same_kind(ws: Workspace, old: Pointer, scan: Scan) -> bool:
    """The file fingerprint leaves out whether the package is one file or a directory:
    a directory ``x`` holding just ``x`` lists like the single file ``x``. Only then
    ask the old manifest."""
    if len(scan.files) != 1 or scan.ref.name not in scan.files:
        return True
    try:
        was_file = ws.cache.read_manifest(old.top_hash).meta.get(FILE_KIND_META) == "file"
    except QuiltError:
        return False
    return was_file == (scan.kind == "file")


def _preload_parquet() -> None:
    """Import the Parquet layer in a thread while files are hashed: a large manifest is
    encoded by pyarrow after hashing, and importing it takes a tenth of a second or more."""
    threading.Thread(target=_import_manifest_io, name="gitquilt-preload").start()


def _import_manifest_io() -> None:
    with contextlib.suppress(ImportError):
        import gitquilt.manifest_io  # noqa: F401


def _old_pointer(ws: Workspace, ref: PackageRef) -> Pointer | None:
    try:
        return ws.read_pointer(ref)
    except QuiltError:
        return None


def _refuse_nested(ws: Workspace, ref: PackageRef) -> None:
    """A package cannot sit inside another package, nor contain one."""
    parts = ref.path.split("/")
    for i in range(1, len(parts)):
        outer = "/".join(parts[:i])
        if (ws.root / (outer + SUFFIX)).is_file():
            raise UsageError(f"{ref.path} is inside the package {outer}; add {outer} instead")
    target = ws.root / ref.path
    if target.is_dir() and not target.is_symlink():
        for dirpath, _dirs, files in os.walk(target):
            for name in files:
                if name.endswith(SUFFIX):
                    inner = os.path.relpath(os.path.join(dirpath, name), ws.root)
                    raise UsageError(f"{ref.path} contains another package's pointer {inner}; packages cannot nest")
            break  # pointers sit beside their directory: only the top level can hold one


def _refuse_tracked(ws: Workspace, ref: PackageRef) -> None:
    prefix = ref.path + "/"
    for path in ws.git.index_paths_cache():
        if path == ref.path or path.startswith(prefix):
            raise UsageError(
                f"{ref.path} is tracked by git; untrack it first: git rm -r --cached '{ref.path}' && git quilt add '{ref.path}'"
            )


def _gitignore_rel(ref: PackageRef) -> str:
    return f"{ref.parent}/.gitignore" if ref.parent else ".gitignore"


def ensure_ignored(ws: Workspace, ref: PackageRef, is_dir: bool) -> bool:
    """Add the package to the ``.gitignore`` beside its pointer; True if the file changed."""
    path = ws.root / _gitignore_rel(ref)
    line = "/" + _escape_gitignore(ref.name) + ("/" if is_dir else "")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    lines = text.splitlines()
    if line in lines or line.rstrip("/") in lines:
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    fsutil.atomic_write_bytes(path, (text + line + "\n").encode("utf-8"))
    return True


def _escape_gitignore(name: str) -> str:
    out = []
    for ch in name:
        if ch in "*?[]\\!#":
            out.append("\\" + ch)
        else:
            out.append(ch)
    text = "".join(out)
    if text.endswith(" "):
        text = text[:-1] + "\\ "
    return text
