"""End to end, local cache only: installed hooks hydrate on checkout and merge; the merge
driver merges pointers; worktrees share the cache; hooks run nothing a clone supplies.

RELIABILITY.md §8 items 49, 51, 52 and §9 item 53, plus §5 item 36.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gitquilt.hooks import HOOK_NAMES, shim_text
from tests.conftest import BIN_DIR, Repo, quilt_env, run

pytestmark = pytest.mark.e2e


def two_versions(repo: Repo) -> None:
    """images at v1 (tag) and v2 (main), hooks installed."""
    repo.quilt("install", check=True)
    repo.write("images/a.txt", "a1")
    repo.write("images/b.txt", "b1")
    repo.write("images/sub/c.txt", "c1")
    repo.quilt("add", "images", "-m", "v1", check=True)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "v1")
    repo.git("tag", "v1")
    repo.write("images/a.txt", "a2")
    (repo.root / "images/sub/c.txt").unlink()
    repo.write("images/d.txt", "d2")
    repo.quilt("add", "images", "-m", "v2", check=True)
    repo.git("commit", "-qam", "v2")


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


V1 = {"a.txt": b"a1", "b.txt": b"b1", "sub/c.txt": b"c1"}
V2 = {"a.txt": b"a2", "b.txt": b"b1", "d.txt": b"d2"}


def test_checkout_tag_hydrates_and_main_returns(repo: Repo) -> None:
    two_versions(repo)
    r = repo.git("-c", "advice.detachedHead=false", "checkout", "v1")
    assert files(repo.root / "images") == V1
    assert "images" in r.stderr and "Traceback" not in r.stderr
    repo.git("checkout", "main")
    assert files(repo.root / "images") == V2
    assert repo.quilt("status", "--check").returncode == 0


def test_branch_switch_without_pointer_change_touches_nothing(repo: Repo) -> None:
    two_versions(repo)
    repo.git("checkout", "-qb", "code")
    repo.write("train.py", "print('hi')\n")
    repo.git("add", "train.py")
    repo.git("commit", "-qm", "code only")
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (repo.root / "images").rglob("*") if p.is_file()}
    r = repo.git("checkout", "main")
    r2 = repo.git("checkout", "code")
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (repo.root / "images").rglob("*") if p.is_file()}
    assert before == after
    assert "gitquilt" not in r.stderr + r2.stderr


def test_file_checkout_flag_0_hydrates_nothing(repo: Repo) -> None:
    two_versions(repo)
    r = repo.git("checkout", "v1", "--", "images.quilt")
    assert r.returncode == 0 and "gitquilt" not in r.stderr
    assert files(repo.root / "images") == V2  # only the pointer changed; `git quilt checkout` hydrates on request
    repo.quilt("checkout", "images", check=True)
    assert files(repo.root / "images") == V1


def _importtime(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gitquilt", "hook", *args],
        cwd=repo.root, env=repo.env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_fast_path_imports_no_heavy_module(repo: Repo) -> None:
    two_versions(repo)
    repo.write("train.py", "x = 1\n")
    repo.git("add", "train.py")
    repo.git("commit", "-qm", "code")
    new = repo.git("rev-parse", "HEAD").stdout.strip()
    old = repo.git("rev-parse", "HEAD~1").stdout.strip()
    v1 = repo.git("rev-parse", "v1^{commit}").stdout.strip()
    for args in ((old, new, "1"), (new, new, "1"), (v1, new, "0")):
        p = _importtime(repo, "post-checkout", *args)
        assert p.returncode == 0, p.stderr
        imported = {ln.split("|")[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
        assert "click" in imported  # the probe sees imports at all
        heavy = {m for m in imported if m.split(".")[0] in ("boto3", "botocore", "pyarrow", "pygit2", "torch")}
        assert heavy == set(), args
    # and the probe notices the heavy path when a pointer did change (the cached manifest's
    # canonical-text copy spares even that path pyarrow)
    p = _importtime(repo, "post-checkout", v1, new, "1")
    assert p.returncode == 0, p.stderr
    assert "gitquilt.ops.checkout" in p.stderr


def test_locally_modified_file_blocks_hydration_with_one_line(repo: Repo) -> None:
    two_versions(repo)
    repo.write("images/a.txt", "my unsaved edit")
    r = repo.git("-c", "advice.detachedHead=false", "checkout", "v1", check=False)
    assert r.returncode != 0  # git reports the hook's status; the checkout itself happened
    assert repo.git("rev-parse", "HEAD").stdout == repo.git("rev-parse", "v1^{commit}").stdout
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "git quilt checkout --force images" in errors[0]
    assert repo.read("images/a.txt") == b"my unsaved edit"
    assert not list((repo.root / "images").rglob("*.tmp*"))


def test_chained_hook_still_runs(repo: Repo) -> None:
    hdir = repo.root / ".git" / "hooks"
    (hdir / "post-checkout").write_text('#!/bin/sh\necho "mine $3" >> .git/mine.log\n')
    (hdir / "post-checkout").chmod(0o755)
    two_versions(repo)
    repo.git("-c", "advice.detachedHead=false", "checkout", "v1")
    assert (repo.root / ".git/mine.log").read_text() == "mine 1\n"
    assert files(repo.root / "images") == V1
    repo.quilt("uninstall", check=True)
    assert (hdir / "post-checkout").read_text() == '#!/bin/sh\necho "mine $3" >> .git/mine.log\n'


def test_install_twice_and_init_install(make_repo: Callable[..., Repo]) -> None:
    repo = make_repo(init=False)
    r = repo.quilt("init", "--install", check=True)
    assert "installed hook pre-push" in r.stdout
    again = repo.quilt("install", check=True)
    assert "nothing to change" in again.stdout
    for name in HOOK_NAMES:
        assert (repo.root / ".git/hooks" / name).read_bytes() == shim_text(name)
    status = repo.git("status", "--porcelain").stdout
    assert "A  .gitattributes" in status  # init stages its files, install's line included


def test_init_never_prompts_without_a_terminal(make_repo: Callable[..., Repo]) -> None:
    repo = make_repo(init=False)
    r = repo.quilt("init", input="y\n")
    assert r.returncode == 0
    assert "git quilt install" in r.stdout
    assert not (repo.root / ".git/hooks/pre-push").exists()



def test_init_offers_to_install_on_a_terminal(make_repo: Callable[..., Repo]) -> None:
    import pty
    import select

    repo = make_repo(init=False)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN_DIR / "git-quilt"), "init"], cwd=repo.root, env=repo.env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        while b"Install gitquilt's git hooks" not in seen:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"no prompt; output so far: {seen!r}"
            seen += os.read(master, 4096)
        os.write(master, b"y\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert (repo.root / ".git/hooks/pre-push").read_bytes() == shim_text("pre-push")

# -- merges --------------------------------------------------------------------------------
def branches(repo: Repo, ours: dict[str, str], theirs: dict[str, str]) -> None:
    repo.quilt("install", check=True)
    repo.git("add", ".gitattributes")
    repo.write("images/a.txt", "a0")
    repo.write("images/b.txt", "b0")
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "base")
    repo.git("checkout", "-qb", "theirs")
    for k, v in theirs.items():
        repo.write(f"images/{k}", v)
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "theirs")
    repo.git("checkout", "-q", "main")
    for k, v in ours.items():
        repo.write(f"images/{k}", v)
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "ours")


def test_merge_of_different_files_is_clean_and_hydrated(repo: Repo) -> None:
    branches(repo, {"a.txt": "a-ours"}, {"b.txt": "b-theirs", "new.txt": "n"})
    r = repo.git("merge", "-q", "--no-edit", "theirs", check=False)
    assert r.returncode == 0, r.stderr
    assert files(repo.root / "images") == {"a.txt": b"a-ours", "b.txt": b"b-theirs", "new.txt": b"n"}
    assert repo.quilt("status", "--check").returncode == 0
    assert b"CONFLICT" not in repo.read("images.quilt")


def test_squash_merge_hydrates_from_the_index(repo: Repo) -> None:
    branches(repo, {"a.txt": "a-ours"}, {"b.txt": "b-theirs"})
    repo.git("merge", "-q", "--squash", "theirs")
    assert files(repo.root / "images") == {"a.txt": b"a-ours", "b.txt": b"b-theirs"}


def test_same_file_changed_on_both_sides_conflicts_and_keeps_both(repo: Repo) -> None:
    branches(repo, {"a.txt": "a-ours", "b.txt": "b-ours"}, {"a.txt": "a-theirs", "new.txt": "n"})
    theirs_pointer = repo.git("show", "theirs:images.quilt").stdout
    r = repo.git("merge", "--no-edit", "theirs", check=False)
    assert r.returncode != 0
    assert "CONFLICT in package images" in r.stdout + r.stderr and "a.txt" in r.stdout + r.stderr
    text = repo.read("images.quilt").decode()
    assert "# CONFLICT (gitquilt merge)" in text and "#   a.txt" in text
    theirs_top = theirs_pointer.split('top_hash = "')[1][:64]
    assert theirs_top in text
    # git keeps both sides in the index; the pointer is valid and names the clean part + ours
    assert repo.git("show", ":3:images.quilt").stdout == theirs_pointer
    assert "both modified:   images.quilt" in repo.git("status").stdout
    repo.quilt("checkout", "images", check=True)
    assert files(repo.root / "images") == {"a.txt": b"a-ours", "b.txt": b"b-ours", "new.txt": b"n"}
    # theirs' version stays retrievable from the cache through its top hash
    out = repo.root.parent / "theirs-out"
    repo.quilt("export", "images", str(out), "--top-hash", theirs_top[:12], check=True)
    assert files(out) == {"a.txt": b"a-theirs", "b.txt": b"b0", "new.txt": b"n"}
    # resolve: take theirs' a.txt, re-add, commit
    repo.write("images/a.txt", "a-theirs")
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", "merged")
    assert "#" not in repo.read("images.quilt").decode().split("\n", 1)[1]


def test_merge_driver_cli_contract(repo: Repo) -> None:
    """%O %A %B %P directly: exit 0 and %A rewritten on success; a bad side exits 1 and leaves %A."""
    branches(repo, {"a.txt": "a-ours"}, {"b.txt": "b-theirs"})
    tmp = repo.root.parent
    (tmp / "O").write_text(repo.git("show", "main~1:images.quilt").stdout)
    (tmp / "A").write_text(repo.git("show", "main:images.quilt").stdout)
    (tmp / "B").write_text(repo.git("show", "theirs:images.quilt").stdout)
    r = repo.quilt("merge-driver", str(tmp / "O"), str(tmp / "A"), str(tmp / "B"), "images.quilt")
    assert r.returncode == 0, r.stderr
    assert (tmp / "A").read_text() != repo.git("show", "main:images.quilt").stdout
    (tmp / "A").write_text("ours bytes")
    r = repo.quilt("merge-driver", str(tmp / "O"), str(tmp / "A"), str(tmp / "B"), "images.quilt")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert (tmp / "A").read_text() == "ours bytes"


# -- worktrees -----------------------------------------------------------------------------
def test_two_worktrees_share_the_cache_at_different_revisions(repo: Repo) -> None:
    two_versions(repo)
    wt = repo.root.parent / "wt"
    repo.git("worktree", "add", "-q", "--detach", str(wt), "v1")
    assert files(wt / "images") == V1  # hydrated by post-checkout (all-zero old ref)
    assert files(repo.root / "images") == V2
    assert not (wt / ".git").is_dir()  # a linked worktree: the cache is the common dir's
    # switch both at the same time, in opposite directions
    results: list[int] = []

    def switch(cwd: Path, rev: str) -> None:
        results.append(run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", rev], cwd, repo.env).returncode)

    threads = [threading.Thread(target=switch, args=(repo.root, "v1")),
               threading.Thread(target=switch, args=(wt, "main^0"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0]
    assert files(repo.root / "images") == V1
    assert files(wt / "images") == V2


# -- untrusted repositories ------------------------------------------------------------------
def test_clone_installs_and_runs_nothing(repo: Repo, tmp_path: Path) -> None:
    two_versions(repo)
    repo.write("hooks/post-checkout", "#!/bin/sh\ntouch \"$HOME/PWNED\"\n", mode=0o755)
    repo.git("add", "hooks")
    repo.git("commit", "-qm", "ship a hook")
    home = tmp_path / "home"
    home.mkdir()
    env = quilt_env({"HOME": str(home)})
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo.root), str(clone)], tmp_path, env, check=True)
    hooks_dir = clone / ".git" / "hooks"
    assert not any(
        (hooks_dir / n).exists() for n in HOOK_NAMES
    ), "a clone must not get gitquilt hooks by itself"
    assert not (home / "PWNED").exists()
    assert not (clone / "images").exists()  # nothing hydrated without being asked
    # a tracked config that tries to configure an executable is refused, not obeyed
    (clone / ".gitquilt.toml").write_text('[hooks]\ncommand = "touch PWNED"\n')
    r = run(["git", "quilt", "checkout"], clone, env)
    assert r.returncode != 0 and "not allowed in the tracked config" in r.stderr
    assert not (clone / "PWNED").exists() and not (home / "PWNED").exists()


def test_fake_git_in_the_repository_is_never_run(repo: Repo) -> None:
    two_versions(repo)
    fake = repo.write("git", "#!/bin/sh\ntouch \"$(dirname \"$0\")/PWNED\"\nexit 1\n", mode=0o755)
    repo.write("git-quilt", "#!/bin/sh\ntouch \"$(dirname \"$0\")/PWNED\"\nexit 1\n", mode=0o755)
    exe = str(BIN_DIR / "git-quilt")
    v1 = repo.git("rev-parse", "v1^{commit}").stdout.strip()
    main = repo.git("rev-parse", "main").stdout.strip()
    for path in (f".{os.pathsep}{os.environ['PATH']}", f"{os.pathsep}{os.environ['PATH']}"):
        env = dict(repo.env, PATH=path)
        for args in (["install"], ["hook", "post-checkout", main, v1, "1"], ["hook", "post-checkout", v1, main, "1"],
                     ["hook", "post-merge", "0"]):
            r = run([exe, *args], repo.root, env)
            assert r.returncode == 0, (args, r.stderr)
        r = run([exe, "hook", "pre-push", "origin", "/nowhere"], repo.root, env, input="")
        assert r.returncode == 0, r.stderr
    assert not (repo.root / "PWNED").exists()
    assert fake.exists()
    assert files(repo.root / "images") == V2


def test_pre_push_without_a_gitquilt_remote_pushes_nothing(repo: Repo, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path, repo.env, check=True)
    two_versions(repo)
    repo.git("remote", "add", "origin", str(origin))
    r = repo.git("push", "origin", "main", check=False)
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: pre-push")]
    assert len(errors) == 1 and "git quilt remote add" in errors[0] and "--no-verify" in errors[0], r.stderr
    assert run(["git", "ls-remote", str(origin)], tmp_path, repo.env).stdout == ""
    # code-only history (no pointer) pushes freely, hooks or not
    repo.git("checkout", "-q", "--orphan", "code")
    repo.git("rm", "-rq", "--cached", ".")
    repo.write("README", "code only\n")
    repo.git("add", "README")
    repo.git("commit", "-qm", "code")
    r = repo.git("push", "origin", "code", check=False)
    assert r.returncode == 0, r.stderr
