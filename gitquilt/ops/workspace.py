"""The workspace an operation runs in: git repo, config, cache store and stat cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitquilt import pointer as pointer_mod
from gitquilt.config import CONFIG_FILE, Config, cache_dir_override, load_toml, parse_config
from gitquilt.errors import UnsafePath, UsageError
from gitquilt.gitrepo import GitRepo
from gitquilt.keys import check_key, is_git_lookalike
from gitquilt.pointer import SUFFIX, Pointer
from gitquilt.statcache import StatCache
from gitquilt.store import Store


@dataclass(frozen=True)
class PackageRef:
    """Where a package lives in the work tree (paths relative to the root, POSIX)."""

    path: str  # the package directory (or single file), e.g. "data/images"

    @property
    def pointer(self) -> str:
        return self.path + SUFFIX

    @property
    def parent(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


class Workspace:
    """Everything an operation needs, opened once per command."""

    def __init__(self, git: GitRepo, config: Config, cache: Store) -> None:
        self.git = git
        self.config = config
        self.cache = cache
        self._statcache: StatCache | None = None

    @classmethod
    def open(cls, start: Path | str | None = None) -> "Workspace":
        git = GitRepo.discover(start)
        overrides = git.config_section("quilt.")
        config = parse_config(load_toml(git.root / CONFIG_FILE), overrides)
        cache_root = cache_dir_override(overrides.get("quilt.cache.dir")) or (git.common_dir / "quilt")
        cache = Store(cache_root, fsync=config.fsync, read_only_objects=config.link_mode != "copy")
        return cls(git, config, cache)

    @property
    def root(self) -> Path:
        return self.git.root

    @property
    def statcache(self) -> StatCache:
        if self._statcache is None:
            self._statcache = StatCache(self.cache.root / "statcache.sqlite")
        return self._statcache

    def close(self) -> None:
        if self._statcache is not None:
            self._statcache.close()

    # -- packages ------------------------------------------------------------------
    def package_ref(self, arg: str | Path) -> PackageRef:
        """Turn ``images``, ``images/`` or ``images.quilt`` (relative to the cwd) into a ref."""
        text = str(arg).rstrip("/")
        if text.endswith(SUFFIX):
            text = text[: -len(SUFFIX)]
        rel = self.git.relpath(text)
        if not rel:
            raise UsageError("the repository root cannot be a package; name a directory inside it")
        try:
            check_key(rel)
        except UnsafePath as exc:
            raise UsageError(f"{arg}: not usable as a package path ({exc})") from None
        if rel.split("/")[0] == ".git" or any(is_git_lookalike(s) for s in rel.split("/")):
            raise UsageError(f"{arg}: inside .git")
        return PackageRef(rel)

    def pointer_path(self, ref: PackageRef) -> Path:
        return self.root / ref.pointer

    def read_pointer(self, ref: PackageRef) -> Pointer:
        return pointer_mod.read_pointer(self.pointer_path(ref), ref.pointer)

    def pointer_at(self, ref: PackageRef, rev: str | None) -> Pointer:
        """The pointer in the work tree (``rev`` None) or in ``rev``'s tree."""
        if rev is None:
            return self.read_pointer(ref)
        data = self.git.read_at(rev, ref.pointer)
        if data is None:
            from gitquilt.errors import NotFound

            raise NotFound(f"{ref.pointer} does not exist at {rev}")
        return pointer_mod.parse_pointer(data, f"{ref.pointer}@{rev}", file_name=ref.pointer)

    def all_packages(self, rev: str | None = None) -> list[PackageRef]:
        """Packages whose pointers are in git's index plus the work tree (or in ``rev``)."""
        if rev is not None:
            paths = list(self.git.pointer_blob_ids_at(rev))
        else:
            paths = [p for p in self.git.index_pointer_paths() if (self.root / p).is_file()]
        return [PackageRef(p[: -len(SUFFIX)]) for p in sorted(paths)]

    def packages_from_args(self, args: tuple[str, ...] | list[str], rev: str | None = None) -> list[PackageRef]:
        if args:
            return [self.package_ref(a) for a in args]
        return self.all_packages(rev)
