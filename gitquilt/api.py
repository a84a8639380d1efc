"""The Python API: ``gitquilt.load()`` browses a package version like a file system.

``load("images")`` reads the pointer in the work tree, ``load("images", rev="v1.0")``
reads it from a tag, branch or commit through pygit2 (no git checkout). The manifest
comes from the cache, or from the default remote when the cache lacks it. Nodes:

* :class:`Package` (the package root) and :class:`Directory`: attribute access
  (``pkg.test.n101085``, naming rules in :func:`attr_name`), item access by logical key
  (``pkg["test/101085.jpg"]``), iteration over child names, ``keys()``, ``len()``,
  ``dir()``; ``node(asa=adapter)`` applies an adapter from :mod:`gitquilt.asa`.
* :class:`File`: ``node()`` returns the local path of the fragment in the cache,
  fetched on demand. That path is the cache's copy: it is made read-only, and writing
  to it (as root, who ignores the mode) would corrupt the cache. Copy it first.

Nodes are cheap to pickle: the git repository and the remote are reopened lazily in
each process (a DataLoader worker under fork or spawn never shares a boto3 client or a
pygit2 handle with its parent; RELIABILITY.md §35).
"""

from __future__ import annotations

import bisect
import difflib
import json
import keyword
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gitquilt.errors import ConfigError, IntegrityError, MissingFragments, NotFound, UnsafePath
from gitquilt.keys import check_key
from gitquilt.manifest import EMPTY_META, Manifest
from gitquilt.ops.pinned import missing_manifest, pinned
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.remotes import Remote

__all__ = ["Directory", "File", "KeyNotFound", "Package", "attr_name", "export", "load"]

_FILE_KIND = "gitquilt.kind"  # package meta of a single-file package (ops/add.py)
_INVALID = re.compile(r"[^A-Za-z0-9_]")


class KeyNotFound(NotFound, KeyError):
    """A logical key that the package does not hold (a KeyError and a QuiltError)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


# -- naming ----------------------------------------------------------------------------------------
def attr_name(name: str, is_file: bool, keep_extension: bool = False) -> str:
    """The attribute name of a child called ``name`` (docs/api.md, "Attribute names").

    1. a file drops its last extension (``101085.jpg`` → ``101085``) unless
       ``keep_extension``; a directory keeps its whole name;
    2. every character outside ``A-Z a-z 0-9 _`` becomes ``_``;
    3. a name starting with a digit or with ``__`` gets an ``n`` prefix (``n101085``);
    4. a Python keyword, or a name the node classes use themselves (``keys``, ``meta``
       …), gets a ``_`` suffix (``class_``, ``keys_``).
    """
    base = name
    if is_file and not keep_extension:
        stem, ext = os.path.splitext(name)
        base = stem if stem and ext else name
    ident = _INVALID.sub("_", base)
    if ident[0].isdigit() or ident.startswith("__"):
        ident = "n" + ident
    if keyword.iskeyword(ident) or ident in _RESERVED:
        ident += "_"
    return ident


class _Names:
    """Attribute name → child name for one directory; ambiguous names map to several children."""

    def __init__(self, dirs: list[str], files: list[str]) -> None:
        self.primary: dict[str, list[str]] = {}
        self.full: dict[str, list[str]] = {}
        for child in dirs:
            self.primary.setdefault(attr_name(child, False), []).append(child)
        for child in files:
            self.primary.setdefault(attr_name(child, True), []).append(child)
            self.full.setdefault(attr_name(child, True, keep_extension=True), []).append(child)

    def resolve(self, ident: str) -> list[str]:
        """The children ``ident`` names: one, several (ambiguous) or none."""
        found = self.primary.get(ident)
        if found is not None:
            return found
        return self.full.get(ident, [])

    def listed(self) -> list[str]:
        """Names that resolve to exactly one child (what ``dir()`` shows)."""
        out = [n for n, c in self.primary.items() if len(c) == 1]
        out += [n for n, c in self.full.items() if len(c) == 1 and n not in self.primary
                and len(self.primary.get(attr_name(c[0], True), ())) > 1]
        return sorted(out)


# -- per-process access to the repository, the cache and the remote ------------------------------
class _Context:
    """Where a loaded package lives; reopens the workspace and the remote in each process.

    Pickling keeps only paths and names, so a node travels to a spawned worker; after a
    fork, the pid check makes the child open its own workspace and remote client.
    """

    def __init__(self, root: Path, remote: str | None, ws: Workspace | None = None) -> None:
        self.root = root
        self.remote_name = remote
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._ws = ws
        self._backend: Remote | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root), "remote": self.remote_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["root"]), state["remote"])  # type: ignore[misc]

    def _fresh(self) -> None:
        """Forget what a parent process opened (called under the lock)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._ws = None
            self._backend = None  # the parent's client and sockets stay the parent's

    def workspace(self) -> Workspace:
        """This process's workspace (opened on first use)."""
        with self._lock:
            self._fresh()
            if self._ws is None:
                self._ws = Workspace.open(self.root)
            return self._ws

    def backend(self, what: str, missing: list[str]) -> Remote:
        """This process's remote (the default one unless ``load(remote=)`` named one)."""
        ws = self.workspace()
        with self._lock:
            self._fresh()
            if self._backend is None:
                from gitquilt.ops.transfer import open_workspace_remote

                try:
                    self._backend = open_workspace_remote(ws, self.remote_name, ws.config.jobs)[1]
                except (ConfigError, NotFound) as exc:
                    raise MissingFragments(f"{what} is not in the cache and cannot be fetched: {exc}", missing) from None
            return self._backend

    def fetch(self, sizes: dict[str, int], what: str) -> int:
        """Bring these fragments (digest → size) into the cache; returns how many were missing.

        Uses ``ops.transfer.fetch_fragments`` (the digest-level fetch of the transfer
        engine: loose objects, and single fragments out of packs by range).
        """
        ws = self.workspace()
        missing: dict[str, int | None] = {d: s for d, s in sizes.items() if not ws.cache.has(d)}
        if not missing:
            return 0
        from gitquilt.ops.transfer import fetch_fragments

        backend = self.backend(what, sorted(missing))
        fetch_fragments(ws, missing, backend=backend)
        still = ws.cache.missing(missing)
        if still:
            raise MissingFragments(f"{what}: {len(still)} fragment(s) did not arrive from {backend.url}", still)
        return len(missing)

    def fetch_manifest(self, path: str, top_hash: str, rev: str | None) -> None:
        """Bring a manifest into the cache from the remote (NotFound names the fetch command)."""
        ws = self.workspace()
        try:
            backend = self.backend(f"manifest {top_hash[:12]}", [])
        except MissingFragments:
            raise missing_manifest(path, top_hash, rev) from None
        from gitquilt.ops.transfer import fetch_manifests

        fetch_manifests(ws, [top_hash], backend=backend)

    def local_path(self, digest: str, size: int, what: str) -> str:
        """The cache path of a fragment (fetched when missing), made read-only."""
        ws = self.workspace()
        path = ws.cache.object_path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.fetch({digest: size}, what)
            st = os.stat(path)
        if st.st_size != size:
            raise IntegrityError(
                f"{what}: the cached fragment {digest[:12]} is {st.st_size} bytes, the manifest says {size} "
                "(run: git quilt verify)"
            )
        if st.st_mode & 0o222:
            try:  # a user writing through the path would change the cache's only copy
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o222)
            except OSError:
                pass  # a shared cache file owned by someone else: they made it
        return str(path)


class _State:
    """One loaded package version: its manifest, a lazily built directory index and a context."""

    def __init__(self, ctx: _Context, path: str, rev: str | None, top_hash: str, manifest: Manifest) -> None:
        self.ctx = ctx
        self.path = path
        self.rev = rev
        self.top_hash = top_hash
        self.manifest = manifest
        self.label = path + (f" at {rev}" if rev else "")  # names the package in errors
        self._listings: dict[str, tuple[list[str], list[str]]] = {}
        self._names: dict[str, _Names] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"ctx": self.ctx, "path": self.path, "rev": self.rev, "top_hash": self.top_hash,
                "manifest": self.manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


    def span(self, prefix: str) -> tuple[int, int]:
        """Indexes of the keys under ``prefix`` ("" or ending in "/"); keys sort by code point."""
        keys = self.manifest.keys
        if not prefix:
            return 0, len(keys)
        return bisect.bisect_left(keys, prefix), bisect.bisect_left(keys, prefix[:-1] + "0")  # "0" follows "/"

    def is_dir(self, key: str) -> bool:
        lo, hi = self.span(key + "/")
        return hi > lo

    def listing(self, prefix: str) -> tuple[list[str], list[str]]:
        """(directory names, file names) directly under ``prefix``, sorted."""
        found = self._listings.get(prefix)
        if found is None:
            lo, hi = self.span(prefix)
            dirs: dict[str, None] = {}
            files: list[str] = []
            cut = len(prefix)
            for key in self.manifest.keys[lo:hi]:
                rest = key[cut:]
                slash = rest.find("/")
                if slash < 0:
                    files.append(rest)
                else:
                    dirs[rest[:slash]] = None
            found = (sorted(dirs), sorted(files))
            self._listings[prefix] = found
        return found

    def names(self, prefix: str) -> _Names:
        found = self._names.get(prefix)
        if found is None:
            found = _Names(*self.listing(prefix))
            self._names[prefix] = found
        return found

    def file(self, key: str) -> File | None:
        entry = self.manifest.get(key)
        if entry is None:
            return None
        return File(self.ctx, self.label, entry.key, entry.sha256, entry.size, entry.executable, entry.meta)


# -- nodes -----------------------------------------------------------------------------------------
class File:
    """One file of a package version. ``node()`` returns its local (read-only) path."""

    __slots__ = ("_ctx", "_label", "_meta", "executable", "key", "sha256", "size")

    def __init__(self, ctx: _Context, label: str, key: str, sha256: str, size: int, executable: bool,
                 meta: str = EMPTY_META) -> None:
        self._ctx = ctx
        self._label = label
        self.key = key  #: logical key in the package, e.g. ``test/101085.jpg``
        self.sha256 = sha256
        self.size = size
        self.executable = executable
        self._meta = meta

    @property
    def name(self) -> str:
        """The file name (last segment of the key)."""
        return self.key.rpartition("/")[2]

    @property
    def meta(self) -> dict[str, Any]:
        """The entry's user metadata (``{}`` when none)."""
        value: dict[str, Any] = json.loads(self._meta)
        return value

    def __call__(self, asa: Callable[[File], Any] | None = None) -> Any:
        """The local path of the fragment (fetched on demand); with ``asa``, ``asa(self)``."""
        if asa is not None:
            return asa(self)
        return self._ctx.local_path(self.sha256, self.size, f"{self._label}: {self.key}")

    def fetch(self) -> int:
        """Bring the fragment into the cache; returns 1 if it was fetched, 0 if present."""
        return self._ctx.fetch({self.sha256: self.size}, f"{self._label}: {self.key}")

    def open(self) -> BinaryIO:
        """The fragment opened for reading (binary)."""
        return open(self(), "rb")

    def read_bytes(self) -> bytes:
        with self.open() as f:
            return f.read()

    def __repr__(self) -> str:
        return f"<gitquilt.File {self.key} ({self.size} bytes, sha256 {self.sha256[:12]})>"


class Directory:
    """A directory of a package version; attribute and item access reach its children."""

    __slots__ = ("_prefix", "_state")

    def __init__(self, state: _State, prefix: str) -> None:
        self._state = state
        self._prefix = prefix  # "" for the package root, else "dir/sub/"

    # -- identity ------------------------------------------------------------------
    @property
    def key(self) -> str:
        """The directory's logical key in the package ("" for the package root)."""
        return self._prefix[:-1]

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def top_hash(self) -> str:
        """The top hash of the package version this node belongs to."""
        return self._state.top_hash

    @property
    def meta(self) -> dict[str, Any]:
        """Package metadata on the root; directories carry none (``{}``)."""
        return dict(self._state.manifest.meta) if not self._prefix else {}

    # -- children ------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Names of the direct children (directories and files), sorted."""
        dirs, files = self._state.listing(self._prefix)
        return sorted(dirs + files)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        dirs, files = self._state.listing(self._prefix)
        return len(dirs) + len(files)

    def items(self) -> Iterator[tuple[str, Directory | File]]:
        for name in self.keys():
            yield name, self[name]

    def walk(self) -> Iterator[tuple[str, File]]:
        """Every file below this directory as (key relative to it, node), in key order."""
        state = self._state
        lo, hi = state.span(self._prefix)
        m, ctx, label = state.manifest, state.ctx, state.label
        cut = len(self._prefix)
        for i in range(lo, hi):
            e = m.entry(i)
            yield e.key[cut:], File(ctx, label, e.key, e.sha256, e.size, e.executable, e.meta)

    def files(self) -> list[File]:
        """Every file below this directory, in key order."""
        return [f for _, f in self.walk()]

    def get(self, key: str, default: Any = None) -> Directory | File | Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> Directory | File:
        """The child at ``key``, a logical key relative to this directory (``"test/1.jpg"``)."""
        if not isinstance(key, str):
            raise TypeError(f"package keys are strings, not {type(key).__name__}")
        rel = key.rstrip("/") if key.endswith("/") and key.strip("/") else key
        full = self._prefix + rel
        try:
            check_key(full)
        except UnsafePath as exc:
            raise KeyNotFound(f"{key!r} is not a valid key in {self._where()}: {exc}") from None
        found = self._state.file(full)
        if found is not None:
            if key.endswith("/"):
                raise KeyNotFound(f"{self._prefix + key!r} asks for a directory, but {full!r} is a file of {self._where()}")
            return found
        if self._state.is_dir(full):
            return Directory(self._state, full + "/")
        raise KeyNotFound(self._missing(full))

    def _where(self) -> str:
        s = self._state
        inside = f" (in {self.key}/)" if self._prefix else ""
        return f"package {s.label}{inside}, top hash {s.top_hash[:12]}"

    def _missing(self, full: str) -> str:
        s = self._state
        parent, _, leaf = full.rpartition("/")
        hint = ""
        if not parent or s.is_dir(parent):
            dirs, files = s.listing(parent + "/" if parent else "")
            close = difflib.get_close_matches(leaf, dirs + files, n=3)
            if close:
                hint = "; did you mean " + ", ".join(repr((parent + "/" if parent else "") + c) for c in close) + "?"
        return f"{full!r} is not in package {s.label} (top hash {s.top_hash[:12]}, {len(s.manifest)} files){hint}"

    def __getattr__(self, ident: str) -> Directory | File:
        if ident.startswith("__") or ident in _SLOTS:
            raise AttributeError(ident)  # probes by copy/pickle, or a half-unpickled node
        children = self._state.names(self._prefix).resolve(ident)
        if len(children) == 1:
            return self[children[0]]
        where = self.key + "/" if self._prefix else f"{self._state.path}/"
        if children:
            shown = ", ".join(repr(self._prefix + c) for c in children)
            raise AttributeError(f"{ident!r} is ambiguous in {where}: it names {shown}; use item access, e.g. "
                                 f"pkg[{self._prefix + children[0]!r}]")
        raise AttributeError(f"{where} has no child named {ident!r} (see dir(), or use item access by key)")

    def __dir__(self) -> list[str]:
        public = {n for n in _RESERVED if not n.startswith("_")}
        return sorted(public | set(self._state.names(self._prefix).listed()))

    def _ipython_key_completions_(self) -> list[str]:
        return self.keys()

    # -- data ----------------------------------------------------------------------
    def fetch(self, files: Iterable[File] | None = None) -> int:
        """Bring the fragments of ``files`` (default: every file below this directory) into the
        cache in one batch; returns how many were missing."""
        sizes = {f.sha256: f.size for f in (self.files() if files is None else files)}
        return self._state.ctx.fetch(sizes, f"{self._state.label}: {self.key or '.'}")

    def __call__(self, asa: Callable[[Directory], Any] | None = None) -> Any:
        """``asa(self)`` with an adapter; without one, {relative key: local path} of every file."""
        if asa is not None:
            return asa(self)
        self.fetch()
        return {rel: f() for rel, f in self.walk()}

    def __repr__(self) -> str:
        dirs, files = self._state.listing(self._prefix)
        shown = [d + "/" for d in dirs] + files
        lines = [f"<gitquilt.{type(self).__name__} {self._headline()}>"]
        lines += ["  " + n for n in shown[:20]]
        if len(shown) > 20:
            lines.append(f"  … {len(shown) - 20} more")
        return "\n".join(lines)

    def _headline(self) -> str:
        return f"{self._state.path}/{self.key}/ ({len(self)} entries)"


class Package(Directory):
    """The root of one package version, as ``load()`` returns it."""

    __slots__ = ()

    @property
    def path(self) -> str:
        """The package's path in the repository (``images``)."""
        return self._state.path

    @property
    def rev(self) -> str | None:
        """The revision it was loaded at (None: the work-tree pointer)."""
        return self._state.rev

    @property
    def manifest(self) -> Manifest:
        return self._state.manifest

    @property
    def is_file(self) -> bool:
        """True for a single-file package (``git quilt add model.pt``): one child, the file."""
        return bool(self._state.manifest.meta.get(_FILE_KIND) == "file")

    def __call__(self, asa: Callable[[Directory], Any] | None = None) -> Any:
        """Like :meth:`Directory.__call__`; a single-file package returns its file's path."""
        if asa is None and self.is_file and len(self._state.manifest) == 1:
            return self[self._state.manifest.keys[0]]()
        return super().__call__(asa)

    def _headline(self) -> str:
        s = self._state
        at = f" @ {s.rev}" if s.rev else ""
        m = s.manifest
        return f"{s.path}{at} (top hash {s.top_hash[:12]}, {len(m)} files, {m.total_size} bytes)"


_SLOTS = frozenset(["_state", "_prefix"])
_RESERVED = frozenset(n for cls in (Package, Directory) for n in dir(cls) if not n.startswith("__"))


# -- entry points ----------------------------------------------------------------------------------
def _workspace_for(path: str | os.PathLike[str], repo: str | os.PathLike[str] | None) -> tuple[Workspace, str]:
    """Open the repository (``repo``, else the one holding ``path``) and the package argument."""
    if repo is not None:
        ws = Workspace.open(Path(repo))
        return ws, str(path) if os.path.isabs(path) else str(ws.root / path)
    start = Path(os.path.abspath(path)).parent
    while not start.is_dir() and start != start.parent:
        start = start.parent
    return Workspace.open(start), os.fspath(path)


def load(path: str | os.PathLike[str], rev: str | None = None, repo: str | os.PathLike[str] | None = None,
         remote: str | None = None) -> Package:
    """The package at ``path`` as the work-tree pointer pins it, or as ``rev`` pins it.

    ``path`` is the package directory (or its ``.quilt`` pointer), relative to the
    current directory, or to ``repo`` when given. ``rev`` is a tag, branch or commit,
    read from git's object store without a checkout. A manifest missing from the cache
    is fetched from ``remote`` (default: the default remote).
    """
    ws, arg = _workspace_for(path, repo)
    ref = ws.package_ref(arg)
    pin = pinned(ws, ref, rev)
    ctx = _Context(ws.root, remote, ws)
    if not ws.cache.has_manifest(pin.top_hash):
        ctx.fetch_manifest(ref.path, pin.top_hash, rev)
    manifest = ws.cache.read_manifest(pin.top_hash)
    return Package(_State(ctx, ref.path, rev, pin.top_hash, manifest), "")


def export(path: str | os.PathLike[str], dir: str | os.PathLike[str], rev: str | None = None,
           repo: str | os.PathLike[str] | None = None, force: bool = False, remote: str | None = None) -> Any:
    """Copy the files of a package version into ``dir`` (``git quilt export``).

    Missing fragments are fetched first. Returns the ``ExportResult`` of ops/export.py;
    refuses (DirtyWorkTree) to overwrite differing files in ``dir`` unless ``force``.
    """
    from gitquilt.ops.export import export as export_op

    pkg = load(path, rev=rev, repo=repo, remote=remote)
    pkg.fetch()
    return export_op(pkg._state.ctx.workspace(), PackageRef(pkg.path), os.fspath(dir), rev=rev, force=force)
