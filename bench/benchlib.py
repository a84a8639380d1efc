"""Pieces the benchmark scripts share (each script runs standalone: ``python bench/X.py``,
so this directory is on ``sys.path``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Set-up step: run, fail loudly, not timed."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def child_command(script: str, kind: str, *args: str) -> list[str]:
    """Command line that runs one of ``script``'s in-process measurements in a fresh interpreter."""
    return [sys.executable, str(Path(script).resolve()), "--child", kind, *args]


def find_dvc(venv: str | None = "/tmp/venv-dvc") -> str | None:
    """The ``dvc`` executable: in ``venv``, then ``$DVC``, then on PATH; None without one."""
    venv_dvc = str(Path(venv) / "bin" / "dvc") if venv else None
    for cand in (venv_dvc, os.environ.get("DVC"), shutil.which("dvc")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def free_memory_mib() -> float | None:
    """MemFree from /proc/meminfo in MiB (None where there is none). Writers slow down
    when it is low: every new page of cache first has to be reclaimed from another."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemFree:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


#: MemFree (MiB) seen by each :func:`before_timed`, for :func:`free_memory_note`
FREE_BEFORE_TIMED: list[float] = []


def fresh_bytecode(tree: Path | None = None) -> None:
    """Compile gitquilt's modules (of the source ``tree``, else the installed ones) to
    bytecode now: with PYTHONDONTWRITEBYTECODE set, an edited module would otherwise be
    compiled again by every timed command, a few ms each, which an installed gitquilt
    never pays. Benchmarks also drop that variable from their commands' environment."""
    import compileall

    if tree is None:
        import gitquilt

        package = Path(gitquilt.__file__).parent
    else:
        package = tree / "gitquilt"
    compileall.compile_dir(package, quiet=1)


def before_timed() -> None:
    """Call right before starting a timed command: write back everything dirty (not
    timed, so that what ran before is not charged to it) and note the free memory."""
    os.sync()
    free = free_memory_mib()
    if free is not None:
        FREE_BEFORE_TIMED.append(free)


def free_memory_note(samples: list[float] = FREE_BEFORE_TIMED) -> str | None:
    """One line on the free memory seen before the timed commands, for the notes."""
    if not samples:
        return None
    low = min(samples)
    note = f"free memory before timed commands: min {low / 1024:.1f} GiB, max {max(samples) / 1024:.1f} GiB"
    if low < 2048:
        note += " (low: the page cache was being reclaimed during writes, which slows every writer)"
    return note
