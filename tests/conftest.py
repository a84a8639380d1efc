"""Shared fixtures: temporary git repositories and a runner for the real `git quilt`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIR = Path(sys.executable).parent

# Started in the background by a script (`nohup make test &`), pytest inherits SIGINT
# ignored, and so would every gitquilt it starts; the Ctrl-C tests need the usual one.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def quilt_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for subprocesses: the venv's bin first on PATH, a fixed git identity."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com",
        GIT_CONFIG_NOSYSTEM="1", GITQUILT_DEBUG="",
    )
    env.pop("QUILT_CACHE_DIR", None)
    if extra:
        env.update(extra)
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = False,
        input: str | None = None, timeout: float = 120) -> Result:
    """Run a command; with ``check`` a non-zero exit fails the test with its output."""
    p = subprocess.run(args, cwd=cwd, env=env or quilt_env(), capture_output=True, text=True,
                       input=input, timeout=timeout)
    r = Result(p.returncode, p.stdout, p.stderr)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return r


class Repo:
    """A temporary git work tree with helpers to run git and `git quilt` in it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def git(self, *args: str, check: bool = True) -> Result:
        return run(["git", *args], self.root, self.env, check=check)

    def quilt(self, *args: str, check: bool = False, input: str | None = None) -> Result:
        """Run the installed `git quilt` executable (through git, as a user would)."""
        return run(["git", "quilt", *args], self.root, self.env, check=check, input=input)

    def write(self, rel: str, data: bytes | str, mode: int | None = None) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            p.chmod(mode)
        return p

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


@pytest.fixture
def make_repo(tmp_path: Path) -> Iterator[Callable[..., Repo]]:
    """Factory: ``make_repo("name", init=True)`` → a git repo with `git quilt init` done."""
    counter = [0]

    def factory(name: str | None = None, init: bool = True, env: dict[str, str] | None = None) -> Repo:
        counter[0] += 1
        root = tmp_path / (name or f"repo{counter[0]}")
        root.mkdir(parents=True)
        repo = Repo(root, quilt_env(env))
        repo.git("init", "-q", "-b", "main")
        if init:
            repo.quilt("init", check=True)
        return repo

    yield factory


@pytest.fixture
def repo(make_repo: Callable[..., Repo]) -> Repo:
    """One initialised repository."""
    return make_repo("repo")


def require_executable(name: str) -> str:
    path = shutil.which(name, path=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} is not installed; run the tests through `make test`")
    return path
