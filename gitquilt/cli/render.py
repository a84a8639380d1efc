"""Output: progress bars, tables, JSON. The only place that prints."""

from __future__ import annotations

import json
import sys
from typing import Any

import click


class Output:
    """Global output settings for one command run."""

    quiet = False
    json = False


OUT = Output()


def info(message: str) -> None:
    """A line for people (stdout), suppressed by --quiet and --json."""
    if not OUT.quiet and not OUT.json:
        click.echo(message)


def line(message: str) -> None:
    """A line of the command's real output (stdout), not suppressed by --quiet."""
    click.echo(message)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class Bar:
    """A tqdm progress bar on stderr, shown only on a terminal and without --quiet/--json."""

    def __init__(self) -> None:
        self._bar: Any = None
        self.enabled = sys.stderr.isatty() and not OUT.quiet and not OUT.json
        self.warnings: list[str] = []

    def start(self, total: int, unit: str, desc: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        # no monitor thread: work that forks worker processes needs this one to be alone
        tqdm.monitor_interval = 0
        self.close()
        scale = unit == "B"
        self._bar = tqdm(
            total=total, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
            desc=desc, file=sys.stderr, leave=False, mininterval=0.2, delay=1.0,
        )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warn(message)
