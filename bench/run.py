"""``make bench``: run bench/core.py, then bench/remotes.py when it exists.

    python bench/run.py [--runs N] [--only core|remotes]

``--runs`` goes to each script; for a script's own options run it directly
(``python bench/core.py --help``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("core", "remotes")


def main() -> int:
    """Run each benchmark script that exists; the exit status is the first failure's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, help="runs per measurement (each script's default otherwise)")
    ap.add_argument("--only", choices=SCRIPTS, help="run just this script")
    args = ap.parse_args()
    status = 0
    for name in SCRIPTS:
        script = HERE / f"{name}.py"
        if not script.exists() or (args.only and args.only != name):
            continue
        print(f"== {script.name} ==", flush=True)
        extra = ["--runs", str(args.runs)] if args.runs else []
        rc = subprocess.run([sys.executable, str(script), *extra], check=False).returncode
        print(flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
