"""gitquilt.ops.{pinned,ls,diff,log,export,textconv}: the inspection operations, without the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitquilt.errors import (
    AmbiguousPrefix,
    DirtyWorkTree,
    MissingFragments,
    NotFound,
    UnsafePath,
    UsageError,
)
from gitquilt.manifest import Entry, Manifest
from gitquilt.ops import diff as diff_mod
from gitquilt.ops.add import add_package
from gitquilt.ops.export import export
from gitquilt.ops.log import log
from gitquilt.ops.ls import ls
from gitquilt.ops.pinned import pinned
from gitquilt.ops.textconv import describe, parse_lenient
from gitquilt.ops.workspace import PackageRef, Workspace
from gitquilt.pointer import Pointer, parse_pointer
from tests.conftest import Repo

IMG = PackageRef("img")


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def man(files: dict[str, str], execs: set[str] = frozenset(), metas: dict[str, str] | None = None,
        meta: dict[str, object] | None = None) -> Manifest:
    metas = metas or {}
    return Manifest.from_entries(
        [Entry(k, h(v), len(v), k in execs, metas.get(k, "{}")) for k, v in files.items()], meta or {}
    )


@pytest.fixture
def repo(make_repo: Callable[..., Repo]) -> Repo:
    r = make_repo("r")
    r.write("img/a.txt", "a\n")
    r.write("img/sub/b.txt", "bb\n")
    r.write("img/run.sh", "#!/bin/sh\n", mode=0o755)
    add(r)
    r.git("commit", "-qm", "v1")
    return r


def ws_of(repo: Repo) -> Workspace:
    return Workspace.open(repo.root)


def add(repo: Repo, ref: PackageRef = IMG) -> Pointer:
    ws = ws_of(repo)
    try:
        return add_package(ws, ref).pointer
    finally:
        ws.close()


def v2(repo: Repo) -> None:
    """a.txt changed, sub/b.txt removed, new.txt added; committed."""
    repo.write("img/a.txt", "changed\n")
    repo.write("img/new.txt", "new\n")
    (repo.root / "img/sub/b.txt").unlink()
    add(repo)
    repo.git("commit", "-qm", "v2")


# -- pinned / ls ---------------------------------------------------------------------------

def test_ls_work_tree_rev_and_top_hash(repo: Repo) -> None:
    ws = ws_of(repo)
    first = ls(ws, IMG)
    assert first.manifest.keys == ["a.txt", "run.sh", "sub/b.txt"]
    assert (first.files, first.bytes) == (3, 2 + 3 + 10)
    v2(repo)
    ws = ws_of(repo)
    assert ls(ws, IMG).manifest.keys == ["a.txt", "new.txt", "run.sh"]
    assert ls(ws, IMG, rev="HEAD~1").pin.top_hash == first.pin.top_hash
    by_prefix = ls(ws, None, top_hash=first.pin.top_hash[:9])
    assert by_prefix.manifest.keys == first.manifest.keys
    js = first.to_json()
    assert js["entries"][1] == {"key": "run.sh", "size": 10, "sha256": h("#!/bin/sh\n"), "executable": True}


def test_pinned_bad_inputs(repo: Repo) -> None:
    ws = ws_of(repo)
    with pytest.raises(NotFound, match="nope is not a package"):
        pinned(ws, PackageRef("nope"))
    repo.write("plain/x", "x")
    with pytest.raises(NotFound, match="add it with: git quilt add plain"):
        pinned(ws, PackageRef("plain"))
    with pytest.raises(NotFound, match="unknown revision 'nosuch'"):
        pinned(ws, IMG, rev="nosuch")
    with pytest.raises(NotFound, match="does not exist at HEAD"):
        pinned(ws, PackageRef("plain"), rev="HEAD")
    with pytest.raises(UsageError, match="not both"):
        pinned(ws, IMG, rev="HEAD", top_hash="abcdef0")
    with pytest.raises(UsageError, match="at least 7"):
        pinned(ws, IMG, top_hash="abc")
    with pytest.raises(NotFound, match="no package manifest matches"):
        pinned(ws, IMG, top_hash="0000000")


def test_ambiguous_prefix_lists_candidates(repo: Repo) -> None:
    ws = ws_of(repo)
    top = ws.read_pointer(IMG).top_hash
    twin = top[:10] + ("0" if top[10] != "0" else "1") + top[11:]
    shutil.copy(ws.cache.manifest_path(top), ws.cache.manifest_path(twin))
    with pytest.raises(AmbiguousPrefix) as exc:
        ls(ws, IMG, top_hash=top[:8])
    assert top in str(exc.value) and twin in str(exc.value)
    assert ls(ws, IMG, top_hash=top[:12]).pin.top_hash == top


def test_ls_missing_manifest_names_fetch(repo: Repo) -> None:
    ws = ws_of(repo)
    top = ws.read_pointer(IMG).top_hash
    ws.cache.manifest_path(top).unlink()
    with pytest.raises(NotFound, match=f"manifest {top[:12]} is not in the cache; run: git quilt fetch img"):
        ls(ws, IMG)
    with pytest.raises(NotFound, match="img at HEAD: .*git quilt fetch img --rev HEAD"):
        ls(ws, IMG, rev="HEAD")


# -- diff ----------------------------------------------------------------------------------

def _reference_diff(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str]]:
    out = [(k, "removed") for k in old if k not in new] + [(k, "added") for k in new if k not in old]
    out += [(k, "modified") for k in old if k in new and old[k] != new[k]]
    return sorted(out, key=lambda kc: kc[0].encode())


def test_compare_manifests_kinds_and_sizes() -> None:
    old = man({"a": "1", "b": "22", "c": "3", "d": "4", "e": "5"}, execs={"d"})
    new = man({"a": "1", "b": "222", "d": "4", "e": "5", "f": "6"}, metas={"e": '{"x":1}'})
    changes = diff_mod.compare_manifests(old, new)
    assert [(c.key, c.change) for c in changes] == [
        ("b", "modified"), ("c", "removed"), ("d", "modified"), ("e", "modified"), ("f", "added"),
    ]
    b = changes[0]
    assert (b.old_size, b.new_size, b.old_sha256, b.new_sha256) == (2, 3, h("22"), h("222"))
    assert diff_mod.compare_manifests(None, new)[0].change == "added"
    assert {c.change for c in diff_mod.compare_manifests(old, None)} == {"removed"}
    assert diff_mod.compare_manifests(old, old) == []


def test_compare_manifests_with_the_same_keys_across_blocks() -> None:
    n = 3 * diff_mod.BLOCK + 7
    files = {f"f{i:05d}": str(i) for i in range(n)}
    old = man(files, execs={"f00010"})
    changed = dict(files, f00001="x", f01200="y")
    new = man(changed, execs={"f00010", "f00700"}, metas={f"f{n - 1:05d}": '{"a":1}'})
    got = [c.key for c in diff_mod.compare_manifests(old, new)]
    assert got == ["f00001", "f00700", "f01200", f"f{n - 1:05d}"]
    assert diff_mod.compare_manifests(new, new) == []


_keys = st.text(alphabet="ab/-.é\u00e9z\U0001f600", min_size=1, max_size=4).filter(
    lambda k: all(s and s not in (".", "..") for s in k.split("/"))
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, st.sampled_from("xyz"), max_size=8), st.dictionaries(_keys, st.sampled_from("xyz"),
                                                                                     max_size=8))
def test_compare_manifests_matches_a_set_based_reference(old: dict[str, str], new: dict[str, str]) -> None:
    try:
        om, nm = man(old), man(new)
    except UnsafePath:  # key sets with a file/dir clash are not manifests
        return
    got = [(c.key, c.change) for c in diff_mod.compare_manifests(om, nm)]
    assert got == _reference_diff(old, new)


def test_diff_head_vs_work_tree_and_between_revisions(repo: Repo) -> None:
    ws = ws_of(repo)
    assert diff_mod.diff(ws) == []
    repo.write("img/a.txt", "changed\n")
    add(repo)
    ws = ws_of(repo)
    [d] = diff_mod.diff(ws)
    assert (d.path, d.change) == ("img", "modified")
    assert [(f.key, f.change, f.old_size, f.new_size) for f in d.files] == [("a.txt", "modified", 2, 8)]
    repo.git("commit", "-qm", "v2")
    repo.write("data/x", "x")
    add(repo, PackageRef("data"))
    ws = ws_of(repo)
    [d] = diff_mod.diff(ws)  # img unchanged since HEAD; data is new in the work tree
    assert (d.path, d.change, d.old_top_hash) == ("data", "added", None)
    [d] = diff_mod.diff(ws, "HEAD~1", "HEAD")
    assert d.path == "img" and d.count("modified") == 1
    with pytest.raises(NotFound, match="no package data in HEAD~1 or HEAD"):
        diff_mod.diff(ws, "HEAD~1", "HEAD", [str(repo.root / "data")])


def test_diff_restricted_to_paths_and_unknown_package(repo: Repo) -> None:
    repo.write("data/x", "x")
    add(repo, PackageRef("data"))
    repo.write("img/a.txt", "changed\n")
    add(repo)
    ws = ws_of(repo)
    assert [d.path for d in diff_mod.diff(ws)] == ["data", "img"]
    assert [d.path for d in diff_mod.diff(ws, paths=[str(repo.root / "img")])] == ["img"]
    with pytest.raises(NotFound, match="no package ghost in HEAD or the work tree"):
        diff_mod.diff(ws, paths=[str(repo.root / "ghost")])


def test_diff_removed_package_and_repo_without_commits(repo: Repo, make_repo: Callable[..., Repo]) -> None:
    (repo.root / "img.quilt").unlink()
    [d] = diff_mod.diff(ws_of(repo))
    assert d.change == "removed" and d.count("removed") == 3
    fresh = make_repo("fresh")
    fresh.write("p/f", "f")
    add(fresh, PackageRef("p"))
    [d] = diff_mod.diff(ws_of(fresh))
    assert (d.path, d.change) == ("p", "added")


def test_diff_missing_manifest_says_which_and_how_to_fetch(repo: Repo) -> None:
    ws = ws_of(repo)
    old_top = ws.read_pointer(IMG).top_hash
    repo.write("img/a.txt", "changed\n")
    add(repo)
    ws.cache.manifest_path(old_top).unlink()
    with pytest.raises(NotFound) as exc:
        diff_mod.diff(ws_of(repo))
    msg = str(exc.value)
    assert old_top[:12] in msg and "img in HEAD" in msg and "git quilt fetch img --rev HEAD" in msg


def test_split_args(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    v2(repo)
    repo.git("tag", "v1", "HEAD~1")
    monkeypatch.chdir(repo.root)
    ws = ws_of(repo)
    assert diff_mod.split_args(ws, []) == ([], [])
    assert diff_mod.split_args(ws, ["v1"]) == (["v1"], [])
    assert diff_mod.split_args(ws, ["v1", "HEAD", "img"]) == (["v1", "HEAD"], ["img"])
    assert diff_mod.split_args(ws, ["img"]) == ([], ["img"])
    assert diff_mod.split_args(ws, ["v1..HEAD", "img"]) == (["v1", "HEAD"], ["img"])
    assert diff_mod.split_args(ws, ["v1.."]) == (["v1", "HEAD"], [])
    assert diff_mod.split_args(ws, ["ghost"]) == ([], ["ghost"])
    repo.git("tag", "img")  # a tag named like the package: the package wins, as in git's pathspecs
    assert diff_mod.split_args(ws, ["img"]) == ([], ["img"])


# -- log -----------------------------------------------------------------------------------

def test_log_entries_counts_and_limit(repo: Repo) -> None:
    v2(repo)
    repo.git("commit", "-q", "--allow-empty", "-m", "unrelated")
    (repo.root / "img.quilt").unlink()
    repo.git("add", "-A", "img.quilt")
    repo.git("commit", "-qm", "drop img")
    ws = ws_of(repo)
    with pytest.raises(NotFound, match="img is not a package"):
        pinned(ws, IMG)
    entries = log(ws, IMG)
    assert [e.commit.message.strip() for e in entries] == ["drop img", "v2", "v1"]
    dropped, second, first = entries
    assert dropped.pointer is None and (dropped.added, dropped.removed, dropped.modified) == (0, 3, 0)
    assert (second.added, second.removed, second.modified) == (1, 1, 1)
    assert (first.added, first.removed, first.modified) == (3, 0, 0)
    assert second.pointer is not None and second.pointer.files == 3
    assert len(log(ws, IMG, limit=1)) == 1
    assert first.to_json()["top_hash"] == first.pointer.top_hash  # type: ignore[union-attr]
    assert first.date[:2] == "20" and first.date[-5] in "+-"


def test_log_unknown_counts_when_a_manifest_is_missing(repo: Repo) -> None:
    ws = ws_of(repo)
    old_top = ws.read_pointer(IMG).top_hash
    v2(repo)
    ws.cache.manifest_path(old_top).unlink()
    second, first = log(ws_of(repo), IMG)
    assert (second.added, second.removed, second.modified) == (None, None, None)
    assert first.added == 3  # a first version needs no manifest: its pointer counts the files


def test_log_bad_inputs(repo: Repo) -> None:
    ws = ws_of(repo)
    with pytest.raises(NotFound, match="ghost is not a package"):
        log(ws, PackageRef("ghost"))
    with pytest.raises(NotFound, match="unknown revision"):
        log(ws, IMG, rev="nosuch")
    repo.write("new/x", "x")
    add(repo, PackageRef("new"))
    assert log(ws_of(repo), PackageRef("new")) == []  # staged, never committed: empty, not an error


def test_log_reports_an_unreadable_pointer_in_history(repo: Repo) -> None:
    repo.write("img.quilt", "format = 1\ngarbage\n")
    repo.git("commit", "-qam", "broken")
    broken, first = log(ws_of(repo), IMG)
    assert broken.error and "img.quilt@" in broken.error
    assert first.error is None


# -- export --------------------------------------------------------------------------------

def test_export_writes_copies_and_is_idempotent(repo: Repo, tmp_path: Path) -> None:
    ws = ws_of(repo)
    out = tmp_path / "out"
    r = export(ws, IMG, out)
    assert (r.written, r.unchanged) == (3, 0)
    assert (out / "sub/b.txt").read_bytes() == b"bb\n"
    assert os.access(out / "run.sh", os.X_OK) and not os.access(out / "a.txt", os.X_OK)
    cached = ws.cache.object_path(h("a\n"))
    assert (out / "a.txt").stat().st_ino != cached.stat().st_ino and not (out / "a.txt").is_symlink()
    (out / "extra").write_text("mine")
    os.chmod(out / "run.sh", 0o644)
    r = export(ws, IMG, out)
    assert (r.written, r.unchanged) == (0, 2)
    assert os.access(out / "run.sh", os.X_OK)
    assert (out / "extra").read_text() == "mine"


def test_export_refuses_differing_files_unless_forced(repo: Repo, tmp_path: Path) -> None:
    ws = ws_of(repo)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_text("mine")
    (out / "sub/b.txt").write_text("xx\n")  # same size, different bytes
    with pytest.raises(DirtyWorkTree) as exc:
        export(ws, IMG, out)
    assert exc.value.paths == ["a.txt", "sub/b.txt"]
    assert sorted(os.listdir(out)) == ["a.txt", "sub"] and (out / "a.txt").read_text() == "mine"
    r = export(ws, IMG, out, force=True)
    assert r.replaced == ["a.txt", "sub/b.txt"] and (out / "a.txt").read_text() == "a\n"


def test_export_never_writes_through_symlinks(repo: Repo, tmp_path: Path) -> None:
    ws = ws_of(repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside)
    with pytest.raises(UnsafePath, match="symbolic link"):
        export(ws, IMG, out, force=True)
    assert (outside / "b.txt").read_text() == "precious" and sorted(os.listdir(out)) == ["sub"]
    (out / "sub").unlink()
    (out / "a.txt").symlink_to(outside / "b.txt")
    with pytest.raises(DirtyWorkTree):
        export(ws, IMG, out)
    export(ws, IMG, out, force=True)
    assert not (out / "a.txt").is_symlink() and (outside / "b.txt").read_text() == "precious"


def test_export_bad_inputs(repo: Repo, tmp_path: Path) -> None:
    ws = ws_of(repo)
    with pytest.raises(UnsafePath, match="git directory"):
        export(ws, IMG, repo.root / ".git" / "x")
    with pytest.raises(UnsafePath):
        export(ws, IMG, ws.cache.root / "x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        export(ws, IMG, tmp_path / "file")
    with pytest.raises(NotFound):
        export(ws, PackageRef("ghost"), tmp_path / "o")
    ws.cache.object_path(h("bb\n")).unlink()
    with pytest.raises(MissingFragments, match="1 fragment.*git quilt fetch img"):
        export(ws, IMG, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()
    ws.cache.put_bytes(b"bb\n")
    out = tmp_path / "o3"
    (out / "a.txt").mkdir(parents=True)
    with pytest.raises(UnsafePath, match="directory is in the way"):
        export(ws, IMG, out, force=True)
    assert os.listdir(out) == ["a.txt"]


def test_export_by_top_hash_of_saved_files(repo: Repo, tmp_path: Path) -> None:
    from gitquilt.ops.checkout import checkout

    repo.write("img/a.txt", "my edit")
    ws = ws_of(repo)
    [res] = checkout(ws, [IMG], force=True)
    assert res.saved_top_hash and repo.read("img/a.txt") == b"a\n"
    r = export(ws, IMG, tmp_path / "back", top_hash=res.saved_top_hash[:12])
    assert (tmp_path / "back/a.txt").read_text() == "my edit" and r.written == 1


# -- textconv and the lenient pointer parse --------------------------------------------------

def test_lenient_parse_ignores_the_file_name_only(repo: Repo) -> None:
    data = repo.read("img.quilt")
    with pytest.raises(UnsafePath):
        parse_pointer(data, "/tmp/XyZ_img.quilt")
    assert parse_pointer(data, "/tmp/XyZ", check_location=False).path == "img"
    assert parse_lenient(data) is not None
    for bad in (b"", b"not toml [", b"format = 9\n", data.replace(b'"img"', b'"../img"'), b"\xff" * 10):
        assert parse_lenient(bad) is None


def test_describe_lists_files_or_notes_the_missing_manifest(repo: Repo) -> None:
    ws = ws_of(repo)
    p = parse_lenient(repo.read("img.quilt"))
    assert p is not None
    text = describe(p, ws)
    assert f"top_hash = {p.top_hash}" in text
    assert f"a.txt\t2\t{h(chr(97) + chr(10))[:12]}\n" in text
    assert f"run.sh\t10\t{h('#!/bin/sh' + chr(10))[:12]}\tx\n" in text
    ws.cache.manifest_path(p.top_hash).unlink()
    text = describe(p, ws)
    assert "not in the cache" in text and "a.txt" not in text
    assert "not in a gitquilt repository" in describe(p, None, "not in a gitquilt repository")


def test_ls_streamed_json_is_valid_json() -> None:
    import json

    from gitquilt.cli.cmd_ls import _json_lines
    from gitquilt.ops.ls import Listing
    from gitquilt.ops.pinned import Pinned

    for files in ({}, {"a": "1"}, {'q"uote/é 😀\u2028': "2", "b": "3"}):
        m = man(files, execs={"b"})
        listing = Listing(Pinned("p", m.top_hash), m)
        assert json.loads("\n".join(_json_lines(listing))) == listing.to_json()
