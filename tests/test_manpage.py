"""man/git-quilt.1: generated from the commands' help texts, kept up to date, shipped in
the wheel under share/man/man1, where man finds it from PATH, so that `git quilt --help`
(git's `git help quilt`) shows it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gitquilt.cli.main import COMMANDS
from tests.conftest import quilt_env

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "man" / "git-quilt.1"


def test_committed_page_is_up_to_date() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_manpage.py"), "--check"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr + "\nregenerate with: python tools/gen_manpage.py"


def test_page_covers_every_command() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"\n.SS {name.replace('-', chr(92) + '-')}\n" in text, name
    assert text.isascii()  # any troff, any locale


def test_page_is_clean_roff() -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed: cannot check the page's roff")
    p = subprocess.run([groff, "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def _wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources (the build writes beside them)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("gitquilt", "man"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    out.mkdir()
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    p = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return out / p.stdout.strip().splitlines()[-1]


def test_wheel_installs_the_page_where_git_help_finds_it(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        [member] = [n for n in zf.namelist() if n.endswith(".data/data/share/man/man1/git-quilt.1")]
        data = zf.read(member)
    assert data == PAGE.read_bytes()
    # what pip makes of it: <prefix>/share/man/man1, beside the <prefix>/bin on PATH
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "share" / "man" / "man1").mkdir(parents=True)
    (prefix / "share" / "man" / "man1" / "git-quilt.1").write_bytes(data)
    if shutil.which("man") is None:
        pytest.skip("man is not installed: git quilt --help has no viewer here (git quilt -h still works)")
    env = quilt_env({"MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80", "LANG": "C.UTF-8"})
    env.pop("MANPATH", None)
    env["PATH"] = f"{prefix / 'bin'}:{env['PATH']}"
    where = subprocess.run(["man", "-w", "git-quilt"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert where.stdout.strip() == str(prefix / "share" / "man" / "man1" / "git-quilt.1"), where.stdout + where.stderr
    p = subprocess.run(["git", "quilt", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert "GIT-QUILT(1)" in p.stdout and "git quilt status [OPTIONS] [PATHS]..." in p.stdout, p.stdout[:2000]
