"""End to end: ls, diff, log, export, verify and textconv through the real `git quilt`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Repo, Result, run


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def repo(repo: Repo) -> Repo:
    """An initialised repo with package img committed as v1."""
    repo.write("img/a.jpg", b"aaa")
    repo.write("img/sub/b.jpg", b"bbbb")
    repo.write("img/run.sh", b"#!/bin/sh\n", mode=0o755)
    repo.quilt("add", "img", check=True)
    repo.git("commit", "-qm", "v1")
    return repo


def top_of(repo: Repo, rev: str | None = None) -> str:
    text = repo.git("show", f"{rev}:img.quilt").stdout if rev else repo.read("img.quilt").decode()
    m = re.search(r'top_hash = "([0-9a-f]{64})"', text)
    assert m, text
    return m.group(1)


def make_v2(repo: Repo, commit: bool = True) -> None:
    repo.write("img/a.jpg", b"AAAAA")
    repo.write("img/new.jpg", b"new")
    (repo.root / "img/sub/b.jpg").unlink()
    repo.quilt("add", "img", check=True)
    if commit:
        repo.git("commit", "-qm", "v2: edit a, add new, drop b")


def one_line_error(r: Result, *needles: str) -> None:
    """A non-zero exit with exactly one line on stderr holding each of ``needles``."""
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_every_command_has_help_with_an_example(repo: Repo) -> None:
    for name in ("ls", "diff", "log", "export", "verify", "textconv"):
        r = repo.quilt(name, "--help", check=True)
        assert "Example:" in r.stdout, name


def test_git_diff_and_log_show_file_level_changes(repo: Repo) -> None:
    make_v2(repo, commit=False)
    cached = repo.git("diff", "--cached", "img.quilt").stdout
    assert f"-a.jpg\t3\t{h(b'aaa')[:12]}" in cached
    assert f"+a.jpg\t5\t{h(b'AAAAA')[:12]}" in cached
    assert f"+new.jpg\t3\t{h(b'new')[:12]}" in cached
    assert f"-sub/b.jpg\t4\t{h(b'bbbb')[:12]}" in cached
    assert f" run.sh\t10\t{h(b'#!/bin/sh' + bytes([10]))[:12]}\tx" in cached  # unchanged: context
    repo.git("commit", "-qm", "v2")
    logp = repo.git("log", "-p", "--format=COMMIT %s", "--", "img.quilt").stdout
    v2_part, v1_part = logp.split("COMMIT v1")
    assert "+new.jpg\t3" in v2_part and "-sub/b.jpg\t4" in v2_part
    assert "+sub/b.jpg\t4" in v1_part  # the first version lists every file as added
    # from a subdirectory too (git runs textconv with the repository's root as cwd)
    (repo.root / "deep").mkdir()
    r = repo.git("-C", "deep", "log", "-p", "-1", "--format=%s", "--", "../img.quilt")
    assert "+new.jpg\t3" in r.stdout


def test_textconv_without_manifest_or_with_garbage(repo: Repo) -> None:
    top = top_of(repo)
    shutil.move(repo.root / f".git/quilt/manifests/{top}.parquet", repo.root / "saved.parquet")
    r = repo.quilt("textconv", "img.quilt", check=True)
    assert f"top_hash = {top}" in r.stdout and "not in the cache" in r.stdout and "a.jpg" not in r.stdout
    # a pointer in git's temp file (another name) still parses
    tmp = repo.write("XyZ12_img.quilt", repo.read("img.quilt"))
    assert "path = img" in repo.quilt("textconv", str(tmp), check=True).stdout
    garbage = b"this is not a pointer \xff\n" * 3
    repo.write("junk.quilt", garbage)
    raw = subprocess.run(["git", "quilt", "textconv", "junk.quilt"], check=False, cwd=repo.root, env=repo.env,
                         capture_output=True, timeout=60)
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, garbage, b"")
    repo.git("add", "junk.quilt")
    diff = subprocess.run(["git", "diff", "--cached", "--text", "junk.quilt"], check=False, cwd=repo.root, env=repo.env,
                          capture_output=True, timeout=60)
    assert b"+this is not a pointer \xff" in diff.stdout and diff.stderr == b""


def test_ls_text_json_rev_and_top_hash(repo: Repo) -> None:
    v1 = top_of(repo)
    make_v2(repo)
    r = repo.quilt("ls", "img", check=True)
    lines = r.stdout.splitlines()
    assert any(ln.endswith("  new.jpg") and h(b"new")[:12] in ln for ln in lines)
    assert any(re.match(rf"{h(b'#!/bin/sh' + bytes([10]))[:12]}  x\s+10  run\.sh$", ln) for ln in lines), lines
    js = json.loads(repo.quilt("ls", "img", "--rev", "HEAD~1", "--json", check=True).stdout)
    assert js["top_hash"] == v1 and [e["key"] for e in js["entries"]] == ["a.jpg", "run.sh", "sub/b.jpg"]
    assert js["entries"][0] == {"key": "a.jpg", "size": 3, "sha256": h(b"aaa"), "executable": False}
    by_prefix = json.loads(repo.quilt("ls", "--top-hash", v1[:7], "--json", check=True).stdout)
    assert by_prefix["entries"] == js["entries"]


def test_ambiguous_prefix_is_an_error_listing_candidates(repo: Repo) -> None:
    top = top_of(repo)
    twin = top[:9] + ("0" if top[9] != "0" else "1") + top[10:]
    manifests = repo.root / ".git/quilt/manifests"
    shutil.copy(manifests / f"{top}.parquet", manifests / f"{twin}.parquet")
    for args in (("ls", "--top-hash", top[:7]), ("export", "img", "out", "--top-hash", top[:8])):
        r = repo.quilt(*args)
        one_line_error(r, "ambiguous", top, twin)
        assert r.returncode == 2
    assert not (repo.root / "out").exists()
    assert repo.quilt("ls", "--top-hash", top[:10], check=True).stdout.count("\n") >= 3


def test_diff_between_revisions_and_work_tree(repo: Repo) -> None:
    v1 = top_of(repo)
    assert repo.quilt("diff", check=True).stdout.strip() == "no package differs"
    make_v2(repo)
    repo.git("tag", "v2")
    r = repo.quilt("diff", "HEAD~1", "HEAD", check=True)
    assert f"modified package img ({v1[:12]} → {top_of(repo)[:12]}): +1 -1 ~1 files" in r.stdout
    assert "  modified  a.jpg  (3 B → 5 B)" in r.stdout
    assert "  added     new.jpg  (3 B)" in r.stdout
    assert "  removed   sub/b.jpg  (4 B)" in r.stdout
    assert repo.quilt("diff", "HEAD~1..v2", "img", check=True).stdout == r.stdout
    repo.write("img/new.jpg", b"newer")
    repo.quilt("add", "img", check=True)
    js = json.loads(repo.quilt("diff", "--json", check=True).stdout)  # HEAD vs the work tree
    assert [(f["key"], f["change"], f["old_size"], f["new_size"]) for f in js[0]["files"]] == [
        ("new.jpg", "modified", 3, 5)
    ]
    one_rev = json.loads(repo.quilt("diff", "HEAD~1", "--json", check=True).stdout)  # REV vs work tree
    assert {f["key"] for f in one_rev[0]["files"]} == {"a.jpg", "new.jpg", "sub/b.jpg"}


def test_log_lists_pointer_changes(repo: Repo) -> None:
    make_v2(repo)
    repo.git("commit", "-q", "--allow-empty", "-m", "unrelated")
    r = repo.quilt("log", "img", check=True)
    assert r.stdout.count("\ncommit ") + r.stdout.startswith("commit ") == 2
    assert "unrelated" not in r.stdout
    assert f"img: top {top_of(repo)[:12]}  3 files  18 B  +1 -1 ~1" in r.stdout
    assert "img: top" in r.stdout and "+3 -0 ~0" in r.stdout
    assert "Author: Test <test@example.com>" in r.stdout
    js = json.loads(repo.quilt("log", "img", "--json", "-n", "1", check=True).stdout)
    assert len(js) == 1 and js[0]["message"].startswith("v2") and js[0]["files"] == 3 and js[0]["bytes"] == 18
    shutil.move(repo.root / f".git/quilt/manifests/{top_of(repo, 'HEAD~2')}.parquet", repo.root / "x.parquet")
    one = repo.quilt("log", "img", "--oneline", check=True).stdout.splitlines()
    assert len(one) == 2 and "+? -? ~?" in one[0] and "+3 -0 ~0" in one[1]


def test_export_restores_files_saved_by_checkout_force(repo: Repo) -> None:
    repo.write("img/a.jpg", b"my precious edit")
    repo.write("img/mine.txt", b"my new file")
    r = repo.quilt("checkout", "--force", "img", check=True)
    m = re.search(r"get them back with: (git quilt export img DIR --top-hash [0-9a-f]+)", r.stdout)
    assert m, r.stdout
    assert repo.read("img/a.jpg") == b"aaa" and not (repo.root / "img/mine.txt").exists()
    args = m.group(1).split()[2:]
    args[args.index("DIR")] = str(repo.root.parent / "restored")
    repo.quilt(*args, check=True)
    restored = repo.root.parent / "restored"
    assert (restored / "a.jpg").read_bytes() == b"my precious edit"
    assert (restored / "mine.txt").read_bytes() == b"my new file"


def test_export_plain_copies_and_refusals(repo: Repo) -> None:
    out = repo.root.parent / "out"
    r = repo.quilt("export", "img", str(out), check=True)
    assert "3 written, 0 unchanged" in r.stdout
    assert (out / "sub/b.jpg").read_bytes() == b"bbbb" and (out / "run.sh").stat().st_mode & 0o100
    assert not any(p.is_symlink() for p in out.rglob("*"))
    (out / "a.jpg").write_bytes(b"changed by me")
    r = repo.quilt("export", "img", str(out))
    one_line_error(r, "a.jpg", "--force")
    assert r.returncode == 1 and (out / "a.jpg").read_bytes() == b"changed by me"
    r = repo.quilt("export", "img", str(out), "--force", "--json", check=True)
    assert json.loads(r.stdout)["replaced"] == ["a.jpg"] and (out / "a.jpg").read_bytes() == b"aaa"
    make_v2(repo)
    old = repo.root.parent / "old"
    repo.quilt("export", "img", str(old), "--rev", "HEAD~1", check=True)
    assert sorted(p.name for p in old.rglob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_verify_finds_a_flipped_bit(repo: Repo) -> None:
    r = repo.quilt("verify", check=True)
    assert "all intact" in r.stdout
    frag = repo.root / ".git/quilt/objects/sha256" / h(b"bbbb")[:2] / h(b"bbbb")[2:]
    data = bytearray(frag.read_bytes())
    data[2] ^= 0x04
    frag.chmod(0o644)
    frag.write_bytes(bytes(data))
    r = repo.quilt("verify")
    one_line_error(r, "1 damaged")
    assert r.returncode == 1
    assert f"damaged fragment {h(b'bbbb')}" in r.stdout
    assert not frag.exists()
    quarantined = list((repo.root / ".git/quilt/quarantine").iterdir())
    assert [p.name.split(".")[0] for p in quarantined] == [h(b"bbbb")]
    assert quarantined[0].read_bytes() == bytes(data)
    js = json.loads(repo.quilt("verify", "--json", check=True).stdout)
    assert js["ok"] and js["fragments"] == 2 and js["manifests"] == 1
    # the package now misses that fragment: export says how to get it
    one_line_error(repo.quilt("export", "img", "o"), "1 fragment(s)", "git quilt fetch img")


def test_verify_json_exit_code_with_damaged_manifest(repo: Repo) -> None:
    top = top_of(repo)
    path = repo.root / f".git/quilt/manifests/{top}.parquet"
    path.write_bytes(path.read_bytes()[:-20])
    r = repo.quilt("verify", "--json")
    assert r.returncode == 1
    js = json.loads(r.stdout)
    assert [(d["kind"], d["key"]) for d in js["damaged"]] == [("manifest", top)]
    assert not path.exists() and js["damaged"][0]["quarantined"]


BAD_INPUTS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("ls", "ghost"), ("ghost is not a package",)),
    (("ls", "img", "--rev", "nosuch"), ("unknown revision",)),
    (("ls", "img", "--rev", "HEAD", "--top-hash", "abcdef0"), ("not both",)),
    (("ls", "--top-hash", "xyz"), ("at least 7",)),
    (("ls", "--top-hash", "0000000"), ("no package manifest matches",)),
    (("diff", "HEAD", "ghost"), ("no package ghost",)),
    (("diff", "ghost"), ("no package ghost",)),
    (("log", "ghost"), ("ghost is not a package",)),
    (("log", "img", "--rev", "nosuch"), ("unknown revision",)),
    (("export", "ghost", "out"), ("ghost is not a package",)),
    (("export", "img", "out", "--rev", "nosuch"), ("unknown revision",)),
    (("export", "img", ".git/hooks"), ("git directory",)),
    (("textconv", "no-such-file.quilt"), ("cannot read",)),
]


def test_bad_input_is_one_line(repo: Repo) -> None:
    # one repository for all cases (each would cost a second of set-up)
    for args, needles in BAD_INPUTS:
        one_line_error(repo.quilt(*args), *needles)
        assert not (repo.root / "out").exists(), args
    assert repo.quilt("verify", check=True).returncode == 0  # and nothing was damaged on the way


def test_missing_manifest_is_one_line_naming_fetch(repo: Repo) -> None:
    top = top_of(repo)
    (repo.root / f".git/quilt/manifests/{top}.parquet").unlink()
    for args in (("ls", "img"), ("export", "img", "out")):
        one_line_error(repo.quilt(*args), top[:12], "git quilt fetch img")
    one_line_error(repo.quilt("ls", "img", "--rev", "HEAD"), "git quilt fetch img --rev HEAD")
    make_v2(repo)
    one_line_error(repo.quilt("diff", "HEAD~1", "HEAD"), top[:12], "img in HEAD~1", "git quilt fetch img --rev HEAD~1")


def test_outside_a_repository(tmp_path: Path, repo: Repo) -> None:
    for args in (["ls", "img"], ["verify"], ["log", "img"]):
        r = run(["git", "quilt", *args], tmp_path, repo.env)
        one_line_error(r, "not a git repository")
