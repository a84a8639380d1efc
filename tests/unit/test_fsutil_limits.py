"""Hydrating a package of many directories under a low open-file limit."""

from __future__ import annotations

import resource
import shutil
import subprocess

from tests.conftest import Repo


def _checkout_with_limits(repo: Repo, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.run(
        ["git", "quilt", "checkout", "data"], cwd=repo.root, env=repo.env,
        capture_output=True, text=True, preexec_fn=limit, timeout=120,
    )


def _package_of_many_dirs(repo: Repo, dirs: int) -> None:
    for d in range(dirs):
        repo.write(f"data/c{d:04d}/x.bin", str(d))
    repo.quilt("add", "data", check=True)
    shutil.rmtree(repo.root / "data")


def test_soft_limit_is_raised_to_the_hard_limit(repo: Repo) -> None:
    _package_of_many_dirs(repo, 300)
    r = _checkout_with_limits(repo, soft=128, hard=4096)
    assert r.returncode == 0, r.stderr
    assert len(list((repo.root / "data").iterdir())) == 300
    assert repo.quilt("status", "data").stdout.split(": ")[1].startswith("clean")


def test_hard_limit_too_low_is_one_clear_line_and_rerun_completes(repo: Repo) -> None:
    _package_of_many_dirs(repo, 300)
    r = _checkout_with_limits(repo, soft=128, hard=128)
    assert r.returncode == 1
    assert "ulimit -n" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    r = _checkout_with_limits(repo, soft=4096, hard=4096)
    assert r.returncode == 0, r.stderr
    assert repo.quilt("status", "data").stdout.split(": ")[1].startswith("clean")
