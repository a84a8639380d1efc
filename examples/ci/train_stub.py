#!/usr/bin/env python3
"""A tiny, deterministic stand-in for a training job (used by retrain_from_tag.sh's test).

Reads every file under DATA_DIR and writes MODEL_DIR/summary.json (per-file sizes and
SHA-256) and MODEL_DIR/weights.bin (bytes derived from all of the data). The same data
gives byte-identical outputs on every machine, so the model package's top hash is
reproducible, which is what a CI retrain check compares.

usage: train_stub.py DATA_DIR MODEL_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    data, model = Path(argv[0]), Path(argv[1])
    summary = {}
    h = hashlib.sha256()
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        key = path.relative_to(data).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        summary[key] = {"bytes": path.stat().st_size, "sha256": digest}
        h.update(f"{key}\t{digest}\n".encode())
    model.mkdir(parents=True, exist_ok=True)
    (model / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    seed = h.digest()
    weights = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(256))
    (model / "weights.bin").write_bytes(weights)
    print(f"trained on {len(summary)} files -> {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
