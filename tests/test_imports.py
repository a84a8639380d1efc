"""Start-up cost: importing gitquilt or its CLI must not load heavy libraries (click-style test).

Each check runs in a fresh interpreter and inspects ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Repo, quilt_env

HEAVY = ("boto3", "botocore", "pyarrow", "torch")
ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys
{code}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(code: str, cwd: Path = ROOT, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    p = subprocess.run([sys.executable, "-c", _PROBE.format(code=code, heavy=heavy)], cwd=cwd, env=quilt_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    loaded: list[str] = json.loads(p.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize("module", ["gitquilt", "gitquilt.cli.main"])
def test_import_loads_nothing_heavy(module: str) -> None:
    assert _loaded(f"import {module}") == []


def test_the_probe_sees_heavy_imports() -> None:
    """The check above is not vacuous: importing the Parquet layer does load pyarrow."""
    assert "pyarrow" in _loaded("import gitquilt.manifest_io")


def test_cli_help_loads_nothing_heavy() -> None:
    code = "from gitquilt.cli.main import run\nassert run(['--help']) == 0"
    assert _loaded(code) == []


def test_post_checkout_hook_without_pointer_changes_loads_nothing_heavy(repo: Repo) -> None:
    repo.write("code.py", "print('hi')\n")
    repo.git("add", "code.py")
    repo.git("commit", "-qm", "code only")
    code = "from gitquilt.cli.main import run\nrc = run(['hook', 'post-checkout', 'HEAD', 'HEAD', '1'])\nassert rc == 0, rc"
    assert _loaded(code, cwd=repo.root) == []


def test_add_and_checkout_in_the_work_tree_do_not_import_pygit2(repo: Repo) -> None:
    """Discovery, ``quilt.*`` config, the index listing and staging go through the git
    executable; pygit2 (≈ 40 ms) is loaded only for trees and history."""
    repo.write("data/a.txt", "alpha\n")
    add = "from gitquilt.cli.main import run\nassert run(['add', 'data']) == 0"
    assert _loaded(add, cwd=repo.root, heavy=("pygit2",)) == []
    staged = repo.git("diff", "--cached", "--name-only").stdout.split()
    assert {".gitignore", "data.quilt"} <= set(staged)
    repo.git("commit", "-qm", "data")
    (repo.root / "data" / "a.txt").unlink()
    checkout = "from gitquilt.cli.main import run\nassert run(['checkout', 'data']) == 0"
    assert _loaded(checkout, cwd=repo.root, heavy=("pygit2",)) == []
    assert repo.read("data/a.txt") == b"alpha\n"
    assert _loaded(checkout.replace("'data']", "'data', '--rev', 'HEAD']"), cwd=repo.root, heavy=("pygit2",)) == [
        "pygit2"
    ], "the probe sees pygit2 when a revision's tree is read"


def test_status_does_not_import_pygit2_and_still_sees_head(repo: Repo) -> None:
    """The index listing, HEAD and the pointers at HEAD come from the git executable
    (one ``cat-file --batch`` for all packages); the answers are pygit2's."""
    for name in ("a", "b", "c"):
        repo.write(f"{name}/f.txt", f"{name}\n")
        repo.quilt("add", name, check=True)
    status = "from gitquilt.cli.main import run\nassert run(['status', '--json']) in (0, 1)"
    assert _loaded(status, cwd=repo.root, heavy=("pygit2",)) == []  # unborn branch: every pointer is new
    repo.git("commit", "-qm", "three")
    repo.write("b/f.txt", "changed\n")
    repo.quilt("add", "b", check=True)  # b's pointer differs from HEAD's
    (repo.root / "c.quilt").unlink()
    repo.git("rm", "-q", "--cached", "c.quilt")
    repo.write("c/f.txt", "new\n")
    repo.quilt("add", "c", check=True)  # c: staged again, same path
    assert _loaded(status, cwd=repo.root, heavy=("pygit2",)) == []
    listed = {s["path"]: s["pointer_vs_head"] for s in json.loads(repo.quilt("status", "--json", check=True).stdout)}
    assert listed == {"a": "unchanged", "b": "modified", "c": "modified"}
    repo.git("commit", "-qm", "more")
    listed = {s["path"]: s["pointer_vs_head"] for s in json.loads(repo.quilt("status", "--json", check=True).stdout)}
    assert listed == {"a": "unchanged", "b": "unchanged", "c": "unchanged"}


def test_add_does_not_import_pyarrow_or_numpy(repo: Repo) -> None:
    """``add`` writes its manifest with gitquilt's own Parquet writer (importing pyarrow
    and numpy costs ≈ 80 ms of CPU, taken from the hashing threads); the file it writes
    is read back by pyarrow like any other manifest."""
    repo.write("data/a.txt", "alpha\n")
    repo.write("data/sub/b.bin", b"\x00" * 3000)
    add = "from gitquilt.cli.main import run\nassert run(['add', 'data']) == 0"
    assert _loaded(add, cwd=repo.root, heavy=("pyarrow", "numpy")) == []
    top = repo.read("data.quilt").decode().split('top_hash = "')[1].split('"')[0]
    from gitquilt.manifest_io import read_manifest_file

    parquet = next(repo.root.glob(f".git/quilt/manifests/{top}.parquet"))
    manifest = read_manifest_file(str(parquet), top)
    assert manifest.keys == ["a.txt", "sub/b.bin"] and list(manifest.sizes) == [6, 3000]
