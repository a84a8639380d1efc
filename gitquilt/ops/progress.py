"""The progress-reporting interface operations call; the CLI supplies a real bar."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from an operation (implemented by cli.render)."""

    def start(self, total: int, unit: str, desc: str) -> None: ...

    def update(self, n: int = 1) -> None: ...

    def close(self) -> None: ...

    def warn(self, message: str) -> None: ...


class NullProgress:
    """Reports nothing; warnings are collected for the caller."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, total: int, unit: str, desc: str) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)
