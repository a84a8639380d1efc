#!/usr/bin/env python3
"""Helpers for retrain_from_tag.sh (run inside the clone, after `git quilt pull`).

  package_meta.py add-args PKG          print `git quilt add` options (one per line) that
                                        restore the pinned package's message and user
                                        metadata, so an identical rebuild gets the same
                                        top hash
  package_meta.py diff PKG TOP_A TOP_B  list the files that differ between two manifests
"""

from __future__ import annotations

import json
import sys

from gitquilt.ops.workspace import Workspace


def main(argv: list[str]) -> int:
    ws = Workspace.open()
    if len(argv) == 2 and argv[0] == "add-args":
        pointer = ws.read_pointer(ws.package_ref(argv[1]))
        meta = ws.cache.read_manifest(pointer.top_hash).meta
        if "message" in meta:
            print(f"--message={meta['message']}")
        if "user_meta" in meta:
            print(f"--meta={json.dumps(meta['user_meta'], sort_keys=True)}")
        return 0
    if len(argv) == 4 and argv[0] == "diff":
        a = {e.key: e for e in ws.cache.read_manifest(ws.cache.resolve(argv[2]))}
        b = {e.key: e for e in ws.cache.read_manifest(ws.cache.resolve(argv[3]))}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                what = "only pinned" if key not in b else "only rebuilt" if key not in a else "differs"
                print(f"  {argv[1]}/{key}: {what}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
