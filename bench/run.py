"""``make bench``: run bench/core.py, then bench/remotes.py when it exists.

Arguments are passed to each script (e.g. ``python bench/run.py --runs 5``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ("core.py", "remotes.py")


def main() -> int:
    """Run each benchmark script that exists; the exit status is the first failure's."""
    status = 0
    for name in SCRIPTS:
        script = HERE / name
        if not script.exists():
            continue
        print(f"== {name} ==", flush=True)
        rc = subprocess.run([sys.executable, str(script), *sys.argv[1:]], check=False).returncode
        print(flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
