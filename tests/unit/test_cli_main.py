"""gitquilt.cli.main: process-wide settings of the CLI entry point."""

from __future__ import annotations

import os

import pytest

from gitquilt.cli import main as cli_main


def test_cli_process_limits_openblas_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(cli_main.gc, "freeze", lambda: None)
    monkeypatch.setattr(cli_main, "_FREEZE_AFTER_IMPORT", False)  # restored after the test
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["-h"])
    assert exc.value.code == 0
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"


def test_cli_keeps_a_users_openblas_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    monkeypatch.setattr(cli_main.gc, "freeze", lambda: None)
    monkeypatch.setattr(cli_main, "_FREEZE_AFTER_IMPORT", False)  # restored after the test
    with pytest.raises(SystemExit):
        cli_main.main(["-h"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
