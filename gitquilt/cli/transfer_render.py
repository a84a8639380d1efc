"""Progress and summaries for push, fetch and pull: bytes/s on the bar, files/s beside it."""

from __future__ import annotations

import time
from typing import Any

from gitquilt.cli import render


class TransferBar(render.Bar):
    """A byte progress bar that also shows files done and files per second."""

    def __init__(self) -> None:
        super().__init__()
        self._files = 0
        self._t0 = time.monotonic()
        self._shown = 0.0

    def start(self, total: int, unit: str, desc: str) -> None:
        super().start(total, unit, desc)
        self._files = 0
        self._t0 = time.monotonic()

    def file_done(self) -> None:
        self._files += 1
        bar = self._bar
        now = time.monotonic()
        if bar is not None and now - self._shown > 0.2:
            self._shown = now
            rate = self._files / max(now - self._t0, 1e-6)
            bar.set_postfix_str(f"{self._files} files, {rate:.0f} files/s", refresh=False)


def describe(summary: Any) -> str:
    """One line: what moved, how fast, how many requests."""
    verb = "uploaded" if summary.direction == "push" else "downloaded"
    secs = max(summary.seconds, 1e-6)
    parts = [
        f"{verb} {summary.fragments} file(s), {render.human_bytes(summary.bytes)}",
        f"{summary.manifests} manifest(s)",
    ]
    if summary.skipped:
        parts.append(f"{summary.skipped} already there")
    rate = f"{render.human_bytes(summary.bytes / secs)}/s" if summary.bytes else ""
    tail = f" in {summary.seconds:.1f} s" + (f" ({rate})" if rate else "") + f", {summary.requests} requests"
    return ", ".join(parts) + tail + (f" {'to' if summary.direction == 'push' else 'from'} {summary.remote}")
