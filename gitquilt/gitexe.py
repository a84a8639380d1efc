"""Running the ``git`` executable safely (stdlib only, cheap to import).

gitquilt reads repositories through pygit2 (:mod:`gitquilt.gitrepo`), but the hooks
need a few plumbing answers in a couple of milliseconds, before pygit2 (≈ 50 ms to
import) could even load: which pointers changed between two commits, where the hooks
directory is, which objects a push sends. For those it runs ``git`` itself.

The executable is looked up with :func:`shutil.which` on a PATH from which empty and
relative entries (``""``, ``.``, ``bin``) are removed: a repository can contain a file
named ``git``, and hooks run with the work tree as the current directory
(RELIABILITY.md §53; git-lfs CVE-2020-27955).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from gitquilt.errors import QuiltError

#: Environment variables that change how git reads pathspecs; our pathspecs are globs.
_PATHSPEC_ENV = ("GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS", "GIT_ICASE_PATHSPECS")

_GIT: str | None = None


class GitCommandError(QuiltError):
    """``git`` is missing or a plumbing command failed."""


def safe_path(path_env: str | None = None) -> str:
    """``PATH`` with every empty, ``.`` or otherwise relative entry removed."""
    value = os.environ.get("PATH", "") if path_env is None else path_env
    return os.pathsep.join(p for p in value.split(os.pathsep) if p and os.path.isabs(p))


def git_executable() -> str:
    """Absolute path of ``git`` found on the safe PATH (cached per process)."""
    global _GIT
    if _GIT is None:
        found = shutil.which("git", path=safe_path())
        if found is None:
            raise GitCommandError("git was not found on PATH (relative PATH entries are ignored); install git")
        _GIT = os.path.abspath(found)
    return _GIT


def run_git(
    args: Sequence[str],
    cwd: Path | str | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> bytes:
    """Run ``git ARGS`` and return its stdout; a failure raises :class:`GitCommandError`."""
    env = {k: v for k, v in os.environ.items() if k not in _PATHSPEC_ENV}
    try:
        proc = subprocess.run(
            [git_executable(), *args], cwd=cwd, input=input, capture_output=True, env=env, check=False,
        )
    except OSError as exc:
        raise GitCommandError(f"could not run git: {exc.strerror or exc}") from None
    if check and proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitCommandError(f"git {args[0]} failed: {detail[0] if detail else f'exit {proc.returncode}'}")
    return proc.stdout


def is_null_oid(oid: str) -> bool:
    """True for git's all-zero object id (SHA-1 or SHA-256)."""
    return bool(oid) and set(oid) == {"0"}
