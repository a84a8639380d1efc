"""The no-op paths stay cheap (no manifest built, no pyarrow imported) and stay right;
add never imports pyarrow for a package of up to 100,000 files."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import Repo

_PROBE = """
import json, sys
from gitquilt.cli.main import run
rc = run({argv!r})
print(json.dumps({{"rc": rc, "pyarrow": "pyarrow" in sys.modules}}))
"""


def _run_in_process(repo: Repo, *argv: str) -> dict[str, object]:
    p = subprocess.run([sys.executable, "-c", _PROBE.format(argv=list(argv))], cwd=repo.root, env=repo.env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    result: dict[str, object] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


def _package(repo: Repo) -> None:
    for i in range(20):
        repo.write(f"data/d{i % 3}/f{i}.txt", f"file {i}\n")
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")


def test_noop_add_and_status_do_not_load_pyarrow(repo: Repo) -> None:
    _package(repo)
    pointer = repo.read("data.quilt")
    assert _run_in_process(repo, "status", "--check") == {"rc": 0, "pyarrow": False}
    assert _run_in_process(repo, "add", "data") == {"rc": 0, "pyarrow": False}
    assert repo.read("data.quilt") == pointer


def test_changed_add_still_writes_a_manifest(repo: Repo) -> None:
    _package(repo)
    repo.write("data/d0/f0.txt", "changed\n")
    before = set(repo.root.glob(".git/quilt/manifests/*.parquet"))
    # a new manifest, written by gitquilt's own Parquet writer: still no pyarrow
    assert _run_in_process(repo, "add", "data") == {"rc": 0, "pyarrow": False}
    assert len(set(repo.root.glob(".git/quilt/manifests/*.parquet")) - before) == 1
    assert repo.quilt("verify").returncode == 0  # verify reads it with pyarrow
    r = repo.quilt("status", "--json")
    assert json.loads(r.stdout)[0]["state"] == "clean"
    assert json.loads(r.stdout)[0]["pointer_vs_head"] == "modified"


def test_a_directory_holding_only_its_namesake_is_not_the_single_file_package(repo: Repo) -> None:
    """Its file list matches the single-file package's; only the kind tells them apart."""
    repo.write("x", "same bytes\n")
    repo.quilt("add", "x", check=True)
    repo.git("commit", "-qm", "file package")
    single = repo.read("x.quilt")
    (repo.root / "x").unlink()
    repo.write("x/x", "same bytes\n")
    r = repo.quilt("add", "x", check=True)
    assert repo.read("x.quilt") != single, r.stdout
    import shutil

    shutil.rmtree(repo.root / "x")
    repo.quilt("checkout", "x", check=True)
    assert (repo.root / "x" / "x").read_text() == "same bytes\n"
    # and back: a single file again records the single-file manifest
    shutil.rmtree(repo.root / "x")
    repo.write("x", "same bytes\n")
    repo.quilt("add", "x", check=True)
    assert repo.read("x.quilt") == single
