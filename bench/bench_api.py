"""Python API: reading every file of a package through the torch Dataset, from a fresh clone.

Builds a repository with one package of N small files (4 KiB each) pushed to a
directory remote, then prints medians (of RUNS runs, each from a fresh clone whose
cache is empty) of reading every item of ``pkg.data(asa=gitquilt.asa.torch.dataset())``:

- lazy: each item fetches its own fragment on first read (what a DataLoader does);
- batch: ``ds.fetch()`` first (one planned transfer), then every item;
- warm: the cache already holds everything (a second epoch);
- floor: reading the same N files straight from the source work tree.

    python bench/bench_api.py [RUNS] [FILES]
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _size(path: str) -> int:
    with open(path, "rb") as f:
        return len(f.read())


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    import gitquilt
    from tests.conftest import quilt_env

    env = quilt_env()
    base = Path(tempfile.mkdtemp(prefix="bench-api-", dir=ROOT / "bench-work" if (ROOT / "bench-work").is_dir()
                                 else None))
    src = base / "src"
    src.mkdir()

    def sh(*args: str, cwd: Path = src) -> None:
        subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)

    sh("git", "init", "-q", "-b", "main")
    sh("git", "quilt", "init")
    rnd = random.Random(0)
    (src / "data").mkdir()
    for i in range(n):
        (src / "data" / f"{i:06d}.bin").write_bytes(rnd.randbytes(4096))
    sh("git", "quilt", "add", "data")
    sh("git", "quilt", "remote", "add", "origin", str(base / "remote"))
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "data")
    sh("git", "quilt", "push")
    clones = iter(range(1 << 30))

    def fresh() -> Path:
        dest = base / f"clone{next(clones)}"
        sh("git", "clone", "-q", str(src), str(dest), cwd=base)
        return dest

    def read_all(repo: Path, batch: bool) -> None:
        ds = gitquilt.load("data", repo=repo)(asa=gitquilt.asa.torch.dataset(node_parser=_size, pairs=False))
        if batch:
            ds.fetch()
        assert sum(ds[i] for i in range(len(ds))) == 4096 * n

    def floor(_repo: Path) -> None:
        assert sum(_size(str(p)) for p in sorted((src / "data").iterdir())) == 4096 * n

    warm_repo = fresh()
    read_all(warm_repo, True)
    cases: list[tuple[str, Callable[[Path], None], Callable[[], Path]]] = [
        ("floor: read the source files", floor, lambda: src),
        ("warm cache (second epoch)", lambda r: read_all(r, False), lambda: warm_repo),
        ("batch: ds.fetch(), then items", lambda r: read_all(r, True), fresh),
        ("lazy: each item fetches itself", lambda r: read_all(r, False), fresh),
    ]
    print(f"{n} files of 4 KiB, directory remote, median of {runs} runs")
    print(f"{'case':34s} {'seconds':>8s} {'ms/item':>8s}")
    for label, fn, repo_for in cases:
        times = []
        for _ in range(runs):
            repo = repo_for()
            t0 = time.perf_counter()
            fn(repo)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{label:34s} {med:8.3f} {1000 * med / n:8.2f}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
