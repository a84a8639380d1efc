"""GitRepo's reads through the git executable give pygit2's answers."""

from __future__ import annotations

from gitquilt.gitrepo import GitRepo
from tests.conftest import Repo


def test_read_many_at_matches_pygit2(repo: Repo) -> None:
    files = {
        "plain.quilt": b"format = 1\n",
        "with space/and: colon.quilt": b"x",
        "binary.bin": bytes(range(256)) * 3 + b"\n\n",  # newlines and a trailing one: sizes, not lines
        "empty.quilt": b"",
        "dir/inner.quilt": b"inner\n",
    }
    for rel, data in files.items():
        repo.write(rel, data)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "files")
    asked = [*files, "dir", "missing.quilt", "dir/missing"]

    fresh = GitRepo.discover(repo.root)
    assert fresh._repo is None
    got = fresh.read_many_at("HEAD", asked)
    assert fresh._repo is None, "pygit2 was loaded"
    expected = {p: GitRepo.discover(repo.root).read_at("HEAD", p) for p in asked}
    assert got == expected
    assert got["binary.bin"] == files["binary.bin"] and got["empty.quilt"] == b""
    assert got["dir"] is None and got["missing.quilt"] is None  # a tree, a missing path

    # a path git's batch protocol cannot carry goes to pygit2 and still answers
    assert GitRepo.discover(repo.root).read_many_at("HEAD", ["plain.quilt", "odd\nname"]) == {
        "plain.quilt": b"format = 1\n", "odd\nname": None,
    }


def test_has_head_without_pygit2(repo: Repo) -> None:
    fresh = GitRepo.discover(repo.root)
    assert fresh.has_head() is False  # unborn branch
    repo.write("a.txt", "a")
    repo.git("add", "a.txt")
    repo.git("commit", "-qm", "a")
    fresh = GitRepo.discover(repo.root)
    assert fresh.has_head() is True
    assert fresh._repo is None
    assert fresh.index_pointer_paths() == []
    repo.write("p.quilt", "x")
    repo.git("add", "p.quilt")
    assert GitRepo.discover(repo.root).index_pointer_paths() == ["p.quilt"]
