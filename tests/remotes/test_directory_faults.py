"""Directory remotes on a read-only mount or a full disk (§42), and damaged cache copies
re-fetched from the remote (§17).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Repo
from tests.faults.helpers import assert_store_consistent, read_tree, store_objects, write_tree
from tests.remotes.helpers import files

Mount = Callable[[Path, str], None]


@pytest.fixture
def tmpfs() -> Iterator[Mount]:
    """``tmpfs(dir, "size=256k")`` mounts a tmpfs there (skips where mounting is not permitted)."""
    mounted: list[Path] = []

    def mount(path: Path, opts: str) -> None:
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False,
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the conformance suite covers the "
                        "write paths, this test only adds the real ENOSPC/EROFS errors")
        mounted.append(path)

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _repo(make_repo: Callable[..., Repo], remote: Path, n: int = 30, size: int = 20_000) -> Repo:
    repo = make_repo("src")
    repo.quilt("remote", "add", "origin", str(remote), check=True)
    write_tree(repo.root / "data", files(n, size=size))
    repo.quilt("add", "data", check=True)
    repo.git("commit", "-qm", "data")
    return repo


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def test_read_only_directory_remote(make_repo: Callable[..., Repo], tmp_path: Path, tmpfs: Mount) -> None:
    mnt = tmp_path / "ro"
    tmpfs(mnt, "size=4m")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
    repo = _repo(make_repo, mnt / "quilt")
    r = repo.quilt("push")
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert str(mnt / "quilt") in line and ("read-only" in line.lower() or "permission" in line.lower())
    assert_store_consistent(repo.root / ".git" / "quilt")


def test_full_directory_remote_then_rerun_after_freeing_space(make_repo: Callable[..., Repo], tmp_path: Path,
                                                               tmpfs: Mount) -> None:
    mnt = tmp_path / "small"
    tmpfs(mnt, "size=256k")
    remote = mnt / "quilt"
    repo = _repo(make_repo, remote)
    r = repo.quilt("push")
    assert r.returncode == 1
    assert "no space left" in _one_line(r.stderr)
    assert not (remote / "manifests").is_dir() or not any((remote / "manifests").iterdir())
    for digest, path in store_objects(remote).items():  # nothing corrupt left behind
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not any((remote / "tmp").iterdir()), "no temporary file left on the remote"
    subprocess.run(["mount", "-o", "remount,size=8m", str(mnt)], check=True, capture_output=True)
    repo.quilt("push", check=True)
    assert_store_consistent(remote)


def test_damaged_cache_copy_is_quarantined_and_refetched(make_repo: Callable[..., Repo], tmp_path: Path) -> None:
    """§17: verify finds a flipped bit (exit 1, quarantine); checkout then fetches a good copy."""
    remote = tmp_path / "remote"
    repo = _repo(make_repo, remote, n=5, size=1000)
    repo.quilt("push", check=True)
    cache = repo.root / ".git" / "quilt"
    digest, path = min(store_objects(cache).items())
    data = bytearray(path.read_bytes())
    data[10] ^= 0x04
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    r = repo.quilt("verify")
    assert r.returncode == 1 and digest in r.stdout + r.stderr
    assert not path.exists(), "moved to quarantine"
    victim = next(k for k, v in files(5, size=1000).items() if __import__("hashlib").sha256(v).hexdigest() == digest)
    (repo.root / "data" / victim).unlink()
    repo.quilt("checkout", check=True)  # autofetch from the remote
    assert read_tree(repo.root / "data") == files(5, size=1000)


def test_remote_copy_bad_too_fails_naming_the_key_and_leaves_the_work_tree(make_repo: Callable[..., Repo],
                                                                            tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    repo = _repo(make_repo, remote, n=5, size=1000)
    toml = repo.root / ".gitquilt.toml"  # loose objects (a damaged pack: tests/remotes/test_packs_transfer.py)
    toml.write_text(toml.read_text() + "pack_threshold = 0\n")
    repo.quilt("push", check=True)
    cache = repo.root / ".git" / "quilt"
    digest, cpath = min(store_objects(cache).items())
    rpath = store_objects(remote)[digest]
    for p in (cpath, rpath):
        bad = bytearray(p.read_bytes())
        bad[0] ^= 0x01
        p.chmod(0o644)
        p.write_bytes(bytes(bad))
    repo.quilt("verify")  # quarantines the cache copy
    victim = next(k for k, v in files(5, size=1000).items() if __import__("hashlib").sha256(v).hexdigest() == digest)
    target = repo.root / "data" / victim
    target.write_bytes(b"the user's own bytes")
    before = read_tree(repo.root / "data")
    r = repo.quilt("checkout", "--force")
    assert r.returncode == 1
    line = _one_line(r.stderr)
    assert digest in line and "expected sha256" in line
    assert read_tree(repo.root / "data") == before, "the work tree is as it was"
    assert not (cache / "objects" / "sha256" / digest[:2] / digest[2:]).exists()
