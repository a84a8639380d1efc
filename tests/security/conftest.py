"""Fixtures of the security tests."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import quilt_env
from tests.security.hostile import World


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One initialised repository for a whole test module (tests reset what they use)."""
    root = tmp_path_factory.mktemp("world") / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, env=quilt_env(), check=True)
    subprocess.run(["git", "quilt", "init"], cwd=root, env=quilt_env(), check=True, capture_output=True)
    return World(root)
