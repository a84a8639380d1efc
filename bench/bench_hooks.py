"""Hook latency: what `git checkout` pays for gitquilt's post-checkout hook.

Prints medians (of RUNS runs) for the hook's fast path (no pointer changed), a whole
`git checkout` between two commits that differ only in code (with and without the
hook installed), and, as floors measured in the same run, starting the interpreter
and one `git rev-parse`.

    python bench/bench_hooks.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    xs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs) * 1000


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    work = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    try:
        root = work / "repo"
        root.mkdir()

        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout

        git("init", "-q", "-b", "main")
        subprocess.run(["git", "quilt", "init", "--no-install"], cwd=root, env=env, check=True, capture_output=True)
        (root / "data").mkdir()
        for i in range(200):
            (root / "data" / f"{i:04d}.bin").write_bytes(os.urandom(1024))
        subprocess.run(["git", "quilt", "add", "data"], cwd=root, env=env, check=True, capture_output=True)
        git("commit", "-qm", "data")
        (root / "train.py").write_text("print(1)\n")
        git("add", "train.py")
        git("commit", "-qm", "code")
        old, new = git("rev-parse", "HEAD~1").strip(), git("rev-parse", "HEAD").strip()

        rows = [
            ("floor: python -c pass", timed([sys.executable, "-c", "pass"], root, env, runs)),
            ("floor: git rev-parse HEAD", timed(["git", "rev-parse", "HEAD"], root, env, runs)),
            ("git quilt hook post-checkout (no pointer changed)",
             timed(["git", "quilt", "hook", "post-checkout", old, new, "1"], root, env, runs)),
        ]
        switch = ["sh", "-c", f"git checkout -q {old} && git checkout -q {new}"]
        rows.append(("git checkout there and back, no hooks (2 checkouts)", timed(switch, root, env, runs)))
        subprocess.run(["git", "quilt", "install"], cwd=root, env=env, check=True, capture_output=True)
        rows.append(("git checkout there and back, hooks installed", timed(switch, root, env, runs)))
        print(f"post-checkout hook latency, median of {runs} runs (ms)")
        print(f"{'what':<58} {'ms':>8}")
        for name, ms in rows:
            print(f"{name:<58} {ms:8.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
