"""Inspection commands: `git quilt verify`, `export` and `diff` against floors from the same run.

Builds a repository whose cache holds 4 large files and a package of many small files
(2–64 KiB), then prints medians (of RUNS runs) with each run's peak memory:

- `git quilt verify` (re-hashes the whole cache) vs the hashlib floor: a minimal script
  hashing the same cache files with `hashlib.sha256` in a thread pool of one thread per
  core, 1 MiB reads;
- `git quilt export` of the small-file package into an empty directory vs `cp -r` of the
  package directory;
- `git quilt diff` of two versions of that package that differ in every tenth file, vs
  `git quilt ls` of one version (reading one manifest, the floor of any diff).

    python bench/bench_inspect.py [RUNS] [SMALL_FILES] [BIG_MIB]
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = r"""
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
def h(p):
    x = hashlib.sha256()
    with open(p, "rb", buffering=0) as f:
        while b := f.read(1 << 20):
            x.update(b)
    return x.hexdigest()
paths = [os.path.join(d, n) for d, _, ns in os.walk(sys.argv[1]) for n in ns]
with ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(h, paths))
"""


def timed(cmd: list[str], cwd: Path, env: dict[str, str], runs: int,
          before: object = None) -> tuple[float, float]:
    """Median seconds and median peak RSS (MiB) of ``cmd``; ``before`` runs untimed first.

    Linux starts a forked child's peak RSS at its parent's, so this script keeps its own
    memory small (about 30 MiB: the smallest figure the column can show).
    """
    secs, rss = [], []
    for _ in range(runs):
        if callable(before):
            before()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        secs.append(time.perf_counter() - t0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.read().decode() if p.stderr else ''}")
        rss.append(usage.ru_maxrss / 1024)
    return statistics.median(secs), statistics.median(rss)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n_small = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    big_mib = int(sys.argv[3]) if len(sys.argv) > 3 else 128
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    work = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    rng = random.Random(7)
    try:
        root = work / "repo"
        root.mkdir()

        def run(*args: str) -> None:
            subprocess.run(list(args), cwd=root, env=env, check=True, capture_output=True)

        run("git", "init", "-q", "-b", "main")
        run("git", "quilt", "init", "--no-install")
        (root / "big").mkdir()
        for i in range(4):  # in 1 MiB chunks: a forked child inherits this process's peak RSS
            with open(root / "big" / f"{i}.bin", "wb") as f:
                f.writelines(os.urandom(1 << 20) for _ in range(big_mib))
        small = root / "small"
        for i in range(n_small):
            p = small / f"d{i % 100:02d}" / f"{i:06d}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rng.randbytes(rng.randint(2 << 10, 64 << 10)))
        run("git", "quilt", "add", "big", "small")
        run("git", "commit", "-qm", "v1")
        for i in range(0, n_small, 10):
            p = small / f"d{i % 100:02d}" / f"{i:06d}.bin"
            p.write_bytes(rng.randbytes(rng.randint(2 << 10, 64 << 10)))
        run("git", "quilt", "add", "small")
        run("git", "commit", "-qm", "v2")
        cache = root / ".git" / "quilt" / "objects"
        cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        out = work / "out"

        def clear_out() -> None:
            shutil.rmtree(out, ignore_errors=True)

        rows = [
            ("verify (whole cache)", timed(["git", "quilt", "verify"], root, env, runs)),
            ("  floor: hashlib thread pool", timed([sys.executable, "-c", FLOOR, str(cache)], root, env, runs)),
            (f"export small ({n_small} files)", timed(["git", "quilt", "export", "small", str(out)], root, env, runs,
                                                     clear_out)),
            ("  floor: cp -r", timed(["cp", "-r", str(small), str(out)], root, env, runs, clear_out)),
            ("diff HEAD~1 HEAD (10% changed)", timed(["git", "quilt", "diff", "HEAD~1", "HEAD", "--stat"], root, env,
                                                     runs)),
            ("  floor: ls small (one manifest)", timed(["git", "quilt", "ls", "small"], root, env, runs)),
        ]
        print(f"cache: {cache_bytes / (1 << 20):.0f} MiB in {n_small + 4 + n_small // 10} fragments; "
              f"{os.cpu_count()} cores; medians of {runs} runs")
        print(f"{'what':36} {'seconds':>9} {'MiB/s':>9} {'peak RSS MiB':>13}")
        for name, (secs, rss) in rows:
            rate = f"{cache_bytes / (1 << 20) / secs:9.0f}" if "verify" in name or "hashlib" in name else " " * 9
            print(f"{name:36} {secs:9.3f} {rate} {rss:13.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
