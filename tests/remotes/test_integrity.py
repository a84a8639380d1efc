"""RELIABILITY.md §23: a poisoned stat cache fools ``status`` but never ``verify``.

In hardlink mode a hydrated file is the cache's own copy. A user edits it in place (same
size) and resets its mtime: the stat cache still vouches for the old hash, so ``status``
may call the package clean (documented in docs/remotes.md); ``verify`` re-hashes every
byte, reports the damage and quarantines it, and ``checkout`` then restores the file
from the remote.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Repo
from tests.faults.helpers import write_tree


def test_poisoned_stat_cache_is_caught_by_verify_and_repaired_from_the_remote(
    make_repo: Callable[..., Repo], tmp_path: Path,
) -> None:
    repo = make_repo("src")
    repo.git("config", "quilt.linkmode", "hardlink")
    repo.quilt("remote", "add", "origin", str(tmp_path / "remote"), check=True)
    original = b"model weights v1 " * 64
    write_tree(repo.root / "data", {"w.bin": original, "other.txt": b"untouched"})
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    repo.quilt("push", check=True)
    shutil.rmtree(repo.root / "data")
    repo.quilt("checkout", "data", check=True)  # hydrated as hard links to the cache
    target = repo.root / "data" / "w.bin"
    assert target.stat().st_nlink >= 2, "hydrated as a hard link to the cache"
    st = target.stat()
    target.chmod(0o644)
    with open(target, "r+b") as f:  # edit in place, same size
        f.write(b"MODEL")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -d: the old mtime back
    assert len(target.read_bytes()) == len(original)

    status = json.loads(repo.quilt("status", "--json", "data", check=True).stdout)
    # status trusts the stat cache: it may well call this clean (the documented limitation)
    assert status[0]["state"] in ("clean", "modified")

    r = repo.quilt("verify")
    assert r.returncode == 1, "verify re-hashes and never trusts the stat cache"
    assert "content hashes to" in r.stdout
    target.unlink()
    repo.quilt("checkout", "data", check=True)  # the quarantined fragment comes back from the remote
    assert target.read_bytes() == original
