"""Import-layer rules: import-linter's contracts in pyproject.toml must hold.

The second test proves the contracts are not vacuous: on a copy of the package it plants
one violation of each rule (and the imports each rule allows) and expects exactly the
violating contracts to break.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import quilt_env, require_executable

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = require_executable("lint-imports")
    env = quilt_env()
    env["PYTHONPATH"] = str(cwd)  # analyse the package in cwd, not an installed copy
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _contract_names() -> list[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [c["name"] for c in doc["tool"]["importlinter"]["contracts"]]


def test_import_rules_hold() -> None:
    r = _lint(ROOT)
    if r.returncode != 0:
        pytest.fail(f"lint-imports found broken import rules:\n{r.stdout}\n{r.stderr}")
    assert f"Contracts: {len(_contract_names())} kept, 0 broken." in r.stdout


def _status(output: str) -> dict[str, str]:
    """Contract name → KEPT/BROKEN, from lint-imports' summary (names may wrap over lines)."""
    text = " ".join(output.split())
    out = {}
    for name in _contract_names():
        idx = text.find(" ".join(name.split()))
        assert idx >= 0, f"contract {name!r} missing from the output:\n{output}"
        tail = text[idx + len(name):].split()
        out[name] = tail[0]
    return out


def test_contracts_catch_violations_and_allow_the_designated_doors(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "gitquilt", tmp_path / "gitquilt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    pkg = tmp_path / "gitquilt"
    # the doors: these imports are allowed
    for sub in ("remotes", "asa"):
        (pkg / sub).mkdir(exist_ok=True)
        (pkg / sub / "__init__.py").touch()
    (pkg / "remotes" / "s3.py").write_text("import boto3\nimport botocore\nfrom gitquilt.store import Store\n")
    (pkg / "asa" / "torch.py").write_text("import torch\nimport pyarrow\n")
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    # one violation per rule
    (pkg / "keys_evil.py").write_text("import boto3\nimport pygit2\nimport pyarrow\nimport torch\n")
    (pkg / "ops" / "evil.py").write_text("import click\nfrom gitquilt.cli import render\n")
    manifest = pkg / "manifest.py"
    manifest.write_text(manifest.read_text() + "\nfrom gitquilt.store import Store  # upward\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    status = _status(r.stdout)
    assert set(status.values()) == {"BROKEN"}, r.stdout
