"""Git access: the only module that imports pygit2.

Finds the repository, reads pointer blobs at any revision without touching the
checkout, stages files, reads and writes git config, and walks history.

pygit2 takes ≈ 40 ms to import and open a repository, more than ``checkout`` of a
small package spends on everything else; so the questions every command asks first
(where is the repository, what is ``quilt.*`` config, what is in the index, stage
these two files) go to the ``git`` executable (≈ 1 ms a call), and pygit2 is imported
only when history or trees are read. Where ``git`` cannot answer (a bare repository,
no repository, a directory inside ``.git``), pygit2 gives the answer and the error it
always gave.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitquilt.errors import NotFound, QuiltError, UsageError
from gitquilt.gitexe import GitCommandError, run_git

if TYPE_CHECKING:
    import pygit2
else:

    class _LazyPygit2:
        """Stands for the ``pygit2`` module until an attribute is used, then imports it
        and takes its place in this module's globals."""

        def __getattr__(self, name: str) -> Any:
            import pygit2 as module

            globals()["pygit2"] = module
            return getattr(module, name)

    pygit2 = _LazyPygit2()

POINTER_SUFFIX = ".quilt"


@dataclass(frozen=True)
class CommitInfo:
    """What ``log`` shows of a commit."""

    id: str
    time: int
    offset: int
    author: str
    email: str
    message: str


class GitRepo:
    """A git work tree (non-bare) and its repository."""

    def __init__(self, root: Path, git_dir: Path, repo: "pygit2.Repository | None" = None) -> None:
        self.root = root
        self.git_dir = git_dir
        self.common_dir = _common_dir(git_dir)
        self._repo = repo
        self._index_paths: set[str] | None = None

    @property
    def repo(self) -> "pygit2.Repository":
        """The pygit2 repository, opened on first use."""
        if self._repo is None:
            self._repo = pygit2.Repository(str(self.git_dir))
        return self._repo

    @classmethod
    def discover(cls, start: Path | str | None = None) -> "GitRepo":
        """The repository containing ``start`` (default: the current directory)."""
        start = os.fspath(start or os.getcwd())
        found = _discover_with_git(start)
        if found is not None:
            return cls(*found)
        try:
            path = pygit2.discover_repository(start)
        except pygit2.GitError:
            path = None
        if path is None:
            raise UsageError(f"not a git repository (or any parent up to /): {start}; run 'git init' first")
        repo = pygit2.Repository(path)
        if repo.is_bare or repo.workdir is None:
            raise UsageError("gitquilt needs a git work tree; this repository is bare")
        return cls(Path(repo.workdir).resolve(), Path(repo.path).resolve(), repo)

    # -- paths ---------------------------------------------------------------------
    def relpath(self, path: Path | str) -> str:
        """Path relative to the work-tree root, POSIX style; refuses paths outside it."""
        p = Path(os.path.abspath(path))
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            # the root may be reached through a symlink: compare resolved parents
            try:
                rel = p.parent.resolve().relative_to(self.root) / p.name
            except ValueError:
                raise UsageError(f"{path} is outside the repository at {self.root}") from None
        text = rel.as_posix()
        return "" if text == "." else text

    # -- config --------------------------------------------------------------------
    def config_get(self, name: str) -> str | None:
        try:
            return str(self.repo.config[name])
        except (KeyError, pygit2.GitError):
            return None

    def config_set(self, name: str, value: str) -> None:
        self.repo.config[name] = value

    def config_unset(self, name: str) -> None:
        try:
            del self.repo.config[name]
        except (KeyError, pygit2.GitError):
            pass

    def config_section(self, prefix: str) -> dict[str, str]:
        """All config entries whose lower-cased name starts with ``prefix`` (a later
        entry of the same name wins, as in git)."""
        try:
            listed = run_git(["config", "-z", "--list"], cwd=self.root)
        except GitCommandError:
            listed = None
        if listed is not None:
            found: dict[str, str] = {}
            for item in listed.split(b"\0"):
                name, _nl, value = os.fsdecode(item).partition("\n")
                name = name.lower()
                if name.startswith(prefix):
                    found[name] = value
            return found
        out: dict[str, str] = {}
        for entry in self.repo.config:
            name = entry.name.lower()
            if name.startswith(prefix):
                out[name] = entry.value
        return out

    # -- revisions -----------------------------------------------------------------
    def commit(self, rev: str) -> pygit2.Commit:
        try:
            obj = self.repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise NotFound(f"unknown revision {rev!r}") from None
        return commit

    def has_head(self) -> bool:
        """True once HEAD names a commit (false on an unborn branch)."""
        if self._repo is None:  # the git executable answers in ~1 ms; pygit2 costs ~40 ms to load
            try:  # prints the commit id, or nothing (exit 1) on an unborn branch
                return bool(run_git(["rev-parse", "-q", "--verify", "HEAD^{commit}"], cwd=self.root, check=False).strip())
            except GitCommandError:
                pass  # no git to run: pygit2 answers
        try:
            self.repo.head  # noqa: B018
            return True
        except (pygit2.GitError, KeyError):
            return False

    def read_many_at(self, rev: str, relpaths: list[str]) -> dict[str, bytes | None]:
        """:meth:`read_at` for several paths at once (one ``git cat-file --batch`` when
        pygit2 is not loaded yet)."""
        if self._repo is None and relpaths and not any("\n" in p or "\r" in p for p in relpaths):
            got = _cat_file_batch(self.root, [f"{rev}:{p}" for p in relpaths])
            if got is not None:
                return dict(zip(relpaths, got, strict=True))
        return {p: self.read_at(rev, p) for p in relpaths}

    def read_at(self, rev: str, relpath: str) -> bytes | None:
        """Bytes of ``relpath`` in ``rev``'s tree, or None if absent there."""
        tree = self.commit(rev).tree
        try:
            obj = tree[relpath]
        except KeyError:
            return None
        if not isinstance(obj, pygit2.Blob):
            return None
        return obj.data

    def pointers_at(self, rev: str) -> dict[str, bytes]:
        """Every ``*.quilt`` file in ``rev``'s tree: path → bytes."""
        return dict(self._pointers_in_tree(self.commit(rev).tree, ""))

    def pointer_blob_ids_at(self, rev: str) -> dict[str, str]:
        """Every ``*.quilt`` path in ``rev``'s tree → blob id (cheap: reads no blob)."""
        return {p: str(oid) for p, oid in self._pointer_ids(self.commit(rev).tree, "")}

    def _pointer_ids(self, tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, pygit2.Oid]]:
        for entry in tree:
            name = entry.name
            if entry.type_str == "tree":
                yield from self._pointer_ids(self.repo[entry.id], f"{prefix}{name}/")
            elif entry.type_str == "blob" and name.endswith(POINTER_SUFFIX):
                yield f"{prefix}{name}", entry.id

    def _pointers_in_tree(self, tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, bytes]]:
        for path, oid in self._pointer_ids(tree, prefix):
            yield path, self.repo[oid].data

    def blob(self, oid: str) -> bytes:
        return self.repo[oid].data

    def index_pointer_paths(self) -> list[str]:
        """``*.quilt`` paths in git's index (staged or committed)."""
        return sorted(p for p in self.index_paths_cache() if p.endswith(POINTER_SUFFIX))

    def index_paths_cache(self) -> set[str]:
        """Every path in git's index (read once per process)."""
        cached = self._index_paths
        if cached is None:
            try:
                listed = run_git(["ls-files", "-z", "--cached", "--full-name"], cwd=self.root)
                cached = {os.fsdecode(p) for p in listed.split(b"\0") if p}
            except GitCommandError:
                index = self.repo.index
                index.read(False)
                cached = {e.path for e in index}
            self._index_paths = cached
        return cached

    def read_index(self, relpath: str) -> bytes | None:
        index = self.repo.index
        index.read(False)
        try:
            entry = index[relpath]
        except KeyError:
            return None
        return self.repo[entry.id].data

    def stage(self, relpaths: list[str]) -> None:
        """``git add`` these paths (files that exist) and remove missing ones from the index."""
        if not relpaths:
            return
        try:
            # plumbing: adds existing files, removes missing ones, ignores .gitignore (as
            # pygit2's index.add does) and takes git's own index lock
            run_git(["update-index", "--add", "--remove", "--", *relpaths], cwd=self.root)
        except GitCommandError as exc:
            raise QuiltError(f"could not stage {', '.join(relpaths)}: {exc}") from None
        self._index_paths = None

    def is_ignored(self, relpath: str) -> bool:
        return bool(self.repo.path_is_ignored(relpath))

    # -- history -------------------------------------------------------------------
    def history_of(self, relpath: str, rev: str = "HEAD") -> Iterator[tuple[CommitInfo, bytes | None, bytes | None]]:
        """Commits (newest first) that changed ``relpath``: (commit, new bytes, old bytes)."""
        if rev == "HEAD" and not self.has_head():
            return
        start = self.commit(rev)
        walker = self.repo.walk(start.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        for commit in walker:
            new = _blob_at(commit.tree, relpath)
            parents = commit.parents
            old_id = _blob_at(parents[0].tree, relpath) if parents else None
            if new == old_id:
                continue
            if len(parents) > 1 and any(_blob_at(p.tree, relpath) == new for p in parents):
                continue  # a merge that took one side unchanged
            info = CommitInfo(
                id=str(commit.id),
                time=commit.commit_time,
                offset=commit.commit_time_offset,
                author=commit.author.name,
                email=commit.author.email,
                message=commit.message,
            )
            yield (
                info,
                None if new is None else self.repo[new].data,
                None if old_id is None else self.repo[old_id].data,
            )

    def ref_tips(self) -> list[str]:
        """Commit ids of every branch, tag, remote-tracking ref, stash entry and reflog entry."""
        tips: set[str] = set()
        for name in self.repo.references:
            ref = self.repo.references[name]
            try:
                tips.add(str(ref.peel(pygit2.Commit).id))
            except (pygit2.GitError, ValueError, KeyError, pygit2.InvalidSpecError):
                pass
            try:
                for entry in ref.log():
                    if entry.oid_new and entry.oid_new != pygit2.Oid(hex="0" * 40):
                        tips.add(str(entry.oid_new))
            except (pygit2.GitError, KeyError, ValueError):
                pass
        try:
            for entry in self.repo.listall_stashes():
                tips.add(str(entry.commit_id))
        except (pygit2.GitError, AttributeError):
            pass
        return sorted(tips)

    def reachable_pointer_blobs(self) -> dict[str, str]:
        """Every pointer blob in any commit reachable from :meth:`ref_tips`: blob id → path."""
        seen_commits: set[str] = set()
        seen_trees: set[str] = set()
        blobs: dict[str, str] = {}
        for tip in self.ref_tips():
            try:
                walker = self.repo.walk(pygit2.Oid(hex=tip), pygit2.enums.SortMode.NONE)
            except (pygit2.GitError, ValueError):
                continue
            for commit in walker:
                cid = str(commit.id)
                if cid in seen_commits:
                    walker.hide(commit.id)
                    continue
                seen_commits.add(cid)
                stack: list[tuple[pygit2.Tree, str]] = [(commit.tree, "")]
                while stack:
                    tree, prefix = stack.pop()
                    if str(tree.id) in seen_trees:
                        continue
                    seen_trees.add(str(tree.id))
                    for entry in tree:
                        if entry.type_str == "tree":
                            stack.append((self.repo[entry.id], f"{prefix}{entry.name}/"))
                        elif entry.type_str == "blob" and entry.name.endswith(POINTER_SUFFIX):
                            blobs.setdefault(str(entry.id), prefix + entry.name)
        index = self.repo.index
        index.read(False)
        for e in index:
            if e.path.endswith(POINTER_SUFFIX):
                blobs.setdefault(str(e.id), e.path)
        return blobs


def _discover_with_git(start: str) -> tuple[Path, Path] | None:
    """(work-tree root, git dir) of the work tree containing ``start`` as ``git`` sees
    it, or None where git cannot say (no repository, bare, inside ``.git``, no git)."""
    try:
        out = run_git(["rev-parse", "--absolute-git-dir", "--show-toplevel"], cwd=start)
    except (GitCommandError, OSError):
        return None
    lines = os.fsdecode(out).split("\n")
    if len(lines) < 2 or not lines[0] or not lines[1]:
        return None
    return Path(lines[1]).resolve(), Path(lines[0]).resolve()


def _common_dir(git_dir: Path) -> Path:
    """The directory shared by all worktrees (pygit2 has no accessor): ``commondir`` names it."""
    try:
        text = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return git_dir
    except OSError as exc:
        raise QuiltError(f"cannot read {git_dir / 'commondir'}: {exc.strerror}") from None
    return (git_dir / text).resolve() if text else git_dir


def _blob_at(tree: pygit2.Tree, relpath: str) -> pygit2.Oid | None:
    try:
        entry = tree[relpath]
    except KeyError:
        return None
    return entry.id if entry.type_str == "blob" else None


def _cat_file_batch(root: Path, specs: list[str]) -> list[bytes | None] | None:
    """The blobs ``git cat-file --batch`` gives for ``specs`` (``REV:PATH``), None for
    each one that is missing or not a blob; None as a whole if git cannot answer (the
    caller asks pygit2 instead)."""
    try:
        out = run_git(["cat-file", "--batch"], cwd=root, input="".join(f"{s}\n" for s in specs).encode())
    except GitCommandError:
        return None
    got: list[bytes | None] = []
    pos = 0
    for _spec in specs:
        end = out.find(b"\n", pos)
        if end < 0:
            return None
        header = out[pos:end].split(b" ")
        pos = end + 1
        if len(header) == 3 and header[2].isdigit():  # <oid> <type> <size>, then the content
            size = int(header[2])
            content = out[pos:pos + size]
            if len(content) != size or out[pos + size:pos + size + 1] != b"\n":
                return None
            pos += size + 1
            got.append(bytes(content) if header[1] == b"blob" else None)
        elif header[-1] in (b"missing", b"ambiguous"):
            got.append(None)
        else:
            return None
    return got if pos == len(out) else None
