"""Git hooks: install, chain and uninstall the shims, and what each hook does.

The shims in ``hooks/`` only run ``git quilt hook NAME "$@"``; everything else is here.
A hook that was in place before ``install`` is renamed ``NAME.gitquilt-orig`` (its
bytes and mode untouched) and run by :func:`run_original`, with the same arguments and
standard input, so ``uninstall`` can put it back exactly.

Speed matters: ``post-checkout`` runs on every branch switch. Its fast path asks git
itself which pointer blobs changed (one ``git diff-tree``, a few milliseconds) and
returns without importing pygit2, pyarrow or boto3; only when a pointer changed does it
open the workspace and hydrate. Keep module-level imports to the standard library and
the light gitquilt modules (errors, gitexe, pointer).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitquilt.errors import (
    ConfigError,
    DirtyWorkTree,
    MissingFragments,
    NotFound,
    QuiltError,
    RemoteError,
    UnsupportedFormat,
    UsageError,
)
from gitquilt.gitexe import is_null_oid, run_git

if TYPE_CHECKING:
    from gitquilt.ops.progress import Progress
    from gitquilt.ops.workspace import Workspace

HOOK_NAMES = ("post-checkout", "post-merge", "pre-push")
ORIG_SUFFIX = ".gitquilt-orig"
MARKER = "# gitquilt hook shim"
POINTER_SUFFIX = ".quilt"
MERGE_DRIVER = "git quilt merge-driver %O %A %B %P"
MERGE_DRIVER_NAME = "gitquilt package pointers (3-way merge of manifests)"
TEXTCONV = "git quilt textconv"
GITATTRIBUTES_LINES = ["*.quilt diff=quilt", "*.quilt merge=quilt"]

_SHIM = """#!/bin/sh
{marker}: installed by `git quilt install`, removed by `git quilt uninstall`.
# A {name} hook that was here before is kept as {name}{orig} and still runs.
command -v git-quilt >/dev/null 2>&1 || {{ echo >&2 "gitquilt: this repository's {name} hook needs git-quilt on PATH (or run: git quilt uninstall)"; exit 2; }}
exec git quilt hook {name} "$@"
"""


def shim_text(name: str) -> bytes:
    """The exact bytes of the shim for hook ``name`` (also checked into ``hooks/``)."""
    if name not in HOOK_NAMES:
        raise UsageError(f"unknown hook {name!r}; gitquilt installs {', '.join(HOOK_NAMES)}")
    return _SHIM.format(marker=MARKER, name=name, orig=ORIG_SUFFIX).encode()


def is_shim(path: Path) -> bool:
    """True if ``path`` is a regular file written by some version of ``git quilt install``."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head


# -- locating the repository ---------------------------------------------------------------
def locate(start: Path | str | None = None) -> tuple[Path, Path]:
    """(work-tree root, hooks directory) as git sees them; honours ``core.hooksPath``."""
    cwd = Path(start or os.getcwd())
    out = run_git(["rev-parse", "--show-toplevel", "--git-path", "hooks"], cwd=cwd).decode("utf-8", "surrogateescape")
    lines = out.splitlines()
    if len(lines) != 2 or not lines[0]:
        raise UsageError(f"not inside a git work tree: {cwd}")
    root = Path(lines[0])
    hooks = Path(os.path.expanduser(lines[1]))
    return root, (hooks if hooks.is_absolute() else (cwd / hooks)).absolute()


# -- install / uninstall -------------------------------------------------------------------
@dataclass
class InstallResult:
    """What ``install`` or ``uninstall`` changed."""

    hooks_dir: Path
    installed: list[str] = field(default_factory=list)  # new shims
    chained: list[str] = field(default_factory=list)  # an existing hook kept as NAME.gitquilt-orig
    updated: list[str] = field(default_factory=list)  # an older gitquilt shim rewritten
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # uninstall: shims deleted
    restored: list[str] = field(default_factory=list)  # uninstall: original hooks put back
    kept: list[str] = field(default_factory=list)  # uninstall: not ours, left alone
    config: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def install(ws: Workspace) -> InstallResult:
    """Install the hook shims, the merge driver and the diff textconv (idempotent)."""
    from gitquilt import fsutil
    from gitquilt.ops.init import ensure_lines

    _root, hooks_dir = locate(ws.root)
    result = InstallResult(hooks_dir)
    plan: list[tuple[str, str]] = []
    for name in HOOK_NAMES:
        path, orig = hooks_dir / name, hooks_dir / (name + ORIG_SUFFIX)
        if not os.path.lexists(path):
            plan.append((name, "install"))
        elif not path.is_symlink() and path.is_file() and path.read_bytes() == shim_text(name):
            plan.append((name, "unchanged"))
        elif is_shim(path):
            plan.append((name, "update"))
        elif os.path.lexists(orig):
            raise UsageError(
                f"{path} is not gitquilt's hook and {orig.name} already exists; "
                "combine them by hand, then rerun git quilt install"
            )
        else:
            plan.append((name, "chain"))
    try:
        hooks_dir.mkdir(parents=True, exist_ok=True)
        for name, action in plan:
            path = hooks_dir / name
            if action == "unchanged":
                result.unchanged.append(name)
                continue
            if action == "chain":
                os.rename(path, hooks_dir / (name + ORIG_SUFFIX))
                result.chained.append(name)
            fsutil.atomic_write_bytes(path, shim_text(name), mode=0o755)
            os.chmod(path, 0o755)
            (result.installed if action in ("install", "chain") else result.updated).append(name)
    except OSError as exc:
        raise QuiltError(f"cannot write hooks into {hooks_dir}: {exc.strerror or exc}") from None
    for key, value in (
        ("merge.quilt.name", MERGE_DRIVER_NAME),
        ("merge.quilt.driver", MERGE_DRIVER),
        ("diff.quilt.textconv", TEXTCONV),
    ):
        if ws.git.config_get(key) != value:
            ws.git.config_set(key, value)
            result.config.append(key)
    if ensure_lines(ws, ".gitattributes", GITATTRIBUTES_LINES):
        result.files.append(".gitattributes")
    return result


def uninstall(ws: Workspace) -> InstallResult:
    """Remove the shims, put back the hooks they replaced byte for byte, unset the config."""
    _root, hooks_dir = locate(ws.root)
    result = InstallResult(hooks_dir)
    try:
        for name in HOOK_NAMES:
            path, orig = hooks_dir / name, hooks_dir / (name + ORIG_SUFFIX)
            if is_shim(path):
                os.unlink(path)
                result.removed.append(name)
            elif os.path.lexists(path):
                result.kept.append(name)
                continue
            if os.path.lexists(orig):
                os.rename(orig, path)
                result.restored.append(name)
    except OSError as exc:
        raise QuiltError(f"cannot change hooks in {hooks_dir}: {exc.strerror or exc}") from None
    for key, value in (
        ("merge.quilt.driver", MERGE_DRIVER),
        ("merge.quilt.name", MERGE_DRIVER_NAME),
        ("diff.quilt.textconv", TEXTCONV),
    ):
        if ws.git.config_get(key) == value:
            ws.git.config_unset(key)
            result.config.append(key)
    return result


def run_original(hooks_dir: Path, name: str, args: list[str], stdin: bytes | None, cwd: Path) -> int:
    """Run the hook that ``install`` displaced, if any and executable; its exit status."""
    orig = hooks_dir / (name + ORIG_SUFFIX)
    if not (orig.is_file() and os.access(orig, os.X_OK)):
        return 0
    try:
        return subprocess.run([str(orig), *args], input=stdin if stdin is not None else b"", cwd=cwd, check=False).returncode
    except OSError as exc:
        raise QuiltError(f"cannot run {orig}: {exc.strerror or exc}") from None


# -- hook entry points ---------------------------------------------------------------------
@dataclass
class HookOutcome:
    """What a hook did; the CLI prints it and exits with ``exit_code``."""

    exit_code: int = 0
    hydrated: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.errors.append(message)
        self.exit_code = self.exit_code or 1


def changed_pointers(root: Path, old: str, new: str) -> list[str]:
    """Pointer paths added or modified between commits ``old`` and ``new`` (all of ``new`` if
    ``old`` is the null id). Compares blob ids through git; reads no pointer or manifest."""
    if is_null_oid(old):
        out = run_git(["ls-tree", "-r", "-z", "--full-tree", new], cwd=root)
        paths = []
        for rec in out.split(b"\0"):
            meta, _, path = rec.partition(b"\t")
            if path.endswith(POINTER_SUFFIX.encode()) and meta.split(b" ")[1:2] == [b"blob"]:
                paths.append(path.decode("utf-8", "surrogateescape"))
        return sorted(paths)
    out = run_git(["diff-tree", "-r", "-z", "--no-renames", "--raw", old, new, "--", "*" + POINTER_SUFFIX], cwd=root)
    return _raw_diff_paths(out)


def _raw_diff_paths(out: bytes) -> list[str]:
    """Added/modified/type-changed blob paths from ``--raw -z`` output."""
    recs = out.split(b"\0")
    paths = []
    for i in range(0, len(recs) - 1, 2):
        meta, path = recs[i], recs[i + 1]
        fields = meta.split(b" ")
        if len(fields) < 5 or not path.endswith(POINTER_SUFFIX.encode()):
            continue
        new_mode, status = fields[1], fields[4][:1]
        if status != b"D" and new_mode.startswith(b"100"):
            paths.append(path.decode("utf-8", "surrogateescape"))
    return sorted(paths)


def post_checkout(args: list[str], progress: Progress | None = None) -> HookOutcome:
    """``post-checkout OLD NEW FLAG``: hydrate the packages whose pointers changed.

    FLAG 0 (a file checkout, ``git checkout REV -- path``) hydrates nothing: git does not
    say which files it checked out; ``git quilt checkout PATH`` does it on request.
    """
    if len(args) != 3:
        raise UsageError("post-checkout takes OLD NEW FLAG (git passes them)")
    old, new, flag = args
    root, hooks_dir = locate()
    outcome = HookOutcome()
    if flag == "1" and old != new:
        try:
            paths = changed_pointers(root, old, new)
        except QuiltError as exc:
            outcome.fail(f"post-checkout: cannot compare {old[:12]} and {new[:12]} ({exc}); run: git quilt checkout")
            paths = []
        if paths:
            hydrate(root, paths, "post-checkout", outcome, progress)
    _chain(outcome, hooks_dir, "post-checkout", args, None, root)
    return outcome


def post_merge(args: list[str], progress: Progress | None = None) -> HookOutcome:
    """``post-merge SQUASH``: hydrate packages whose pointers differ between ORIG_HEAD and the index.

    Comparing against the index covers a squash merge too, which leaves HEAD where it was.
    """
    if len(args) != 1:
        raise UsageError("post-merge takes SQUASH (git passes it)")
    root, hooks_dir = locate()
    outcome = HookOutcome()
    try:
        orig = run_git(["rev-parse", "-q", "--verify", "ORIG_HEAD^{commit}"], cwd=root, check=False).decode().strip()
        if orig:
            out = run_git(["diff-index", "--cached", "-z", "--no-renames", "--raw", orig, "--", "*" + POINTER_SUFFIX],
                          cwd=root)
            paths = _raw_diff_paths(out)
        else:
            out = run_git(["ls-files", "-z", "--", "*" + POINTER_SUFFIX], cwd=root)
            paths = sorted(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)
    except QuiltError as exc:
        outcome.fail(f"post-merge: cannot list changed pointers ({exc}); run: git quilt checkout")
        paths = []
    if paths:
        hydrate(root, paths, "post-merge", outcome, progress)
    _chain(outcome, hooks_dir, "post-merge", args, None, root)
    return outcome


def _chain(outcome: HookOutcome, hooks_dir: Path, name: str, args: list[str], stdin: bytes | None, root: Path) -> None:
    rc = run_original(hooks_dir, name, args, stdin, root)
    if rc and not outcome.exit_code:
        outcome.exit_code = rc


def hydrate(root: Path, pointer_paths: list[str], hook: str, outcome: HookOutcome,
            progress: Progress | None = None) -> None:
    """Check out each package whose pointer is in ``pointer_paths`` (work-tree pointers).

    Each package is hydrated on its own, so one failure leaves the others done; a
    failure is one line naming the package and the command to run. checkout writes
    nothing before every fragment is in the cache, so a failed fetch leaves no
    half-written file.
    """
    from gitquilt.ops.checkout import checkout
    from gitquilt.ops.workspace import Workspace

    try:
        ws = Workspace.open(root)
    except QuiltError as exc:
        outcome.fail(f"{hook}: {exc}; packages were not hydrated; run: git quilt checkout")
        return
    try:
        fetcher = _fetcher(ws, progress) if ws.config.hooks_autofetch else None
        for rel in pointer_paths:
            if not (root / rel).is_file():
                continue
            pkg = rel[: -len(POINTER_SUFFIX)]
            try:
                ref = ws.package_ref(str(root / rel))
                (result,) = checkout(ws, [ref], progress=progress, fetcher=fetcher)
                outcome.hydrated.append(ref.path)
                if result.written or result.deleted:
                    outcome.info.append(
                        f"gitquilt: {ref.path}: {result.written} written, {result.deleted} deleted "
                        f"(top hash {result.top_hash[:12]})"
                    )
            except DirtyWorkTree as exc:
                outcome.fail(
                    f"{hook}: {pkg}: {len(exc.paths)} locally modified file(s) were left as they are; "
                    f"run: git quilt checkout --force {pkg} (saves them in the cache first)"
                )
            except (MissingFragments, NotFound, RemoteError) as exc:
                reason = str(exc).split("; run:")[0]
                outcome.fail(f"{hook}: {pkg} was not hydrated ({reason}); run: git quilt pull {pkg}")
            except QuiltError as exc:
                reason = str(exc).split("; run:")[0]
                outcome.fail(f"{hook}: {pkg} was not hydrated ({reason}); run: git quilt checkout {pkg}")
    finally:
        ws.close()


def _fetcher(ws: Workspace, progress: Progress | None) -> Any:
    """checkout's fetcher over the default remote (manifests and fragments), or None."""
    try:
        from gitquilt.ops.autofetch import fetcher_for
    except ImportError:
        return None
    return fetcher_for(ws, progress)


# -- pre-push ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushLine:
    """One line git writes to pre-push's standard input."""

    local_ref: str
    local_oid: str
    remote_ref: str
    remote_oid: str


def parse_push_lines(data: bytes) -> list[PushLine]:
    """Parse ``<local ref> <local oid> <remote ref> <remote oid>`` lines."""
    lines = []
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        if not raw.strip():
            continue
        parts = raw.split(" ")
        if len(parts) != 4 or not all(_is_hex(p) for p in (parts[1], parts[3])):
            raise UsageError(f"pre-push: unexpected input line from git: {raw[:120]!r}")
        lines.append(PushLine(*parts))
    return lines


def _is_hex(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def pointers_to_push(root: Path, remote: str, lines: list[PushLine]) -> dict[str, str]:
    """Pointer blobs in the commits being pushed that the remote side does not have: blob id → path.

    Walks objects reachable from each local oid, excluding what the remote already has:
    the remote oid of each line (when we have it) and the remote's tracking refs
    (``refs/remotes/REMOTE/*``), which also covers a new branch (all-zero remote oid).
    """
    includes = [ln.local_oid for ln in lines if not is_null_oid(ln.local_oid)]
    if not includes:
        return {}
    excludes = [ln.remote_oid for ln in lines if not is_null_oid(ln.remote_oid)]
    if remote and remote.replace("-", "").replace("_", "").replace(".", "").isalnum():
        out = run_git(["for-each-ref", "--format=%(objectname)", f"refs/remotes/{remote}/"], cwd=root)
        excludes += out.decode().split()
    revs = "".join(f"{o}\n" for o in includes) + "".join(f"^{o}\n" for o in excludes)
    out = run_git(["rev-list", "--objects", "--ignore-missing", "--stdin"], cwd=root, input=revs.encode())
    found: dict[str, str] = {}
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        oid, _, path = line.partition(" ")
        if path.endswith(POINTER_SUFFIX):
            found.setdefault(oid, path)
    return found


def read_pointer_blobs(root: Path, blobs: dict[str, str], outcome: HookOutcome) -> dict[str, str]:
    """Parse the pointer blobs (one ``git cat-file --batch``): top hash → a path that pins it."""
    from gitquilt.errors import FormatError
    from gitquilt.pointer import MAX_POINTER_BYTES, parse_pointer

    if not blobs:
        return {}
    oids = list(blobs)
    out = run_git(["cat-file", "--batch"], cwd=root, input="".join(f"{o}\n" for o in oids).encode())
    tops: dict[str, str] = {}
    pos = 0
    for oid in oids:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode().split(" ")
        pos = nl + 1
        if len(header) != 3:  # "<oid> missing"
            continue
        size = int(header[2])
        data = out[pos : pos + size]
        pos += size + 1
        path = blobs[oid]
        if header[1] != "blob":
            continue
        if size > MAX_POINTER_BYTES:
            outcome.warnings.append(f"pre-push: {path} is not a gitquilt pointer (too large); not uploading anything for it")
            continue
        try:
            pointer = parse_pointer(data, path)
        except UnsupportedFormat as exc:
            raise QuiltError(f"pre-push: {exc}") from None
        except (FormatError, QuiltError) as exc:
            outcome.warnings.append(f"pre-push: skipping {path}: {exc}")
            continue
        tops.setdefault(pointer.top_hash, path)
    return tops


def pre_push(args: list[str], stdin: bytes, progress: Progress | None = None) -> HookOutcome:
    """``pre-push REMOTE URL`` with git's ref lines on stdin: upload the data first.

    Any failure exits non-zero with one line, so git sends no ref and the remote never
    holds a commit whose data the storage lacks.
    """
    if len(args) != 2:
        raise UsageError("pre-push takes REMOTE URL (git passes them) and ref lines on stdin")
    remote, _url = args
    root, hooks_dir = locate()
    outcome = HookOutcome()
    rc = run_original(hooks_dir, "pre-push", args, stdin, root)
    if rc:
        outcome.exit_code = rc
        return outcome
    lines = parse_push_lines(stdin)
    tops = read_pointer_blobs(root, pointers_to_push(root, remote, lines), outcome)
    if not tops:
        return outcome
    _upload(root, tops, outcome, progress)
    return outcome


def _upload(root: Path, tops: dict[str, str], outcome: HookOutcome, progress: Progress | None) -> None:
    from gitquilt.ops.workspace import Workspace

    packages = ", ".join(sorted({p[: -len(POINTER_SUFFIX)] for p in tops.values()}))
    try:
        from gitquilt.ops.transfer import push_tops
    except ImportError:
        outcome.fail("pre-push: this gitquilt cannot upload to remotes yet; git pushed nothing")
        return
    ws = Workspace.open(root)
    try:
        summary = push_tops(ws, sorted(tops), progress=progress)
    except MissingFragments as exc:
        names = [_object_name(k) for k in exc.missing]
        shown = ", ".join(names[:20]) + (f" … ({len(names)} in all)" if len(names) > 20 else "")
        outcome.fail(
            f"pre-push: {len(names)} object(s) of {packages} are missing from the local cache, "
            f"so git pushed nothing: {shown or exc}"
        )
        return
    except ConfigError as exc:
        outcome.fail(
            f"pre-push: the data of {packages} has nowhere to go, so git pushed nothing: {exc} "
            "(or push the commits without their data: git push --no-verify)"
        )
        return
    except QuiltError as exc:
        outcome.fail(f"pre-push: uploading the data of {packages} failed, so git pushed nothing: {exc}")
        return
    finally:
        ws.close()
    outcome.uploaded = sorted(tops)
    outcome.info.append(f"gitquilt: data of {packages} is on the remote ({_describe(summary)})")


def _object_name(key: str) -> str:
    """``objects/sha256/ab/cdef…`` → ``abcdef…``; ``manifests/<top>.parquet`` → ``manifest <top>``."""
    if key.startswith("objects/sha256/"):
        return key[len("objects/sha256/"):].replace("/", "")
    if key.startswith("manifests/"):
        return "manifest " + key[len("manifests/"):].removesuffix(".parquet")
    return key


def _describe(summary: object) -> str:
    """A short account of a TransferSummary."""
    fragments = getattr(summary, "fragments", 0)
    manifests = getattr(summary, "manifests", 0)
    skipped = getattr(summary, "skipped", 0)
    size = getattr(summary, "bytes", 0)
    return f"{fragments} fragment(s) and {manifests} manifest(s) uploaded, {size} bytes; {skipped} already there"
