#!/usr/bin/env bash
# A short local data-versioning walk-through: init, add, commit, change, go back.
set -euo pipefail
work="${DEMO_DIR:-$(pwd)/demo-work}"
rm -rf "$work" && mkdir -p "$work/repo" && cd "$work/repo"
git init -q -b main
git config user.email demo@example.com && git config user.name "gitquilt demo"
git quilt init
python3 - <<'PY'
import os, random
random.seed(1)
os.makedirs("images/train", exist_ok=True)
for i in range(50):
    with open(f"images/train/{i:03d}.bin", "wb") as f:
        f.write(random.randbytes(random.randint(2048, 65536)))
PY
git quilt add images
git commit -qm "data v1" && git tag v1
echo "v1 pinned: $(grep top_hash images.quilt)"
python3 -c "open('images/train/000.bin','wb').write(b'changed')"
rm images/train/001.bin
git quilt status || true
git quilt add images -m "v2: edited 000, removed 001"
git commit -qm "data v2"
git checkout -q v1
git quilt checkout
git quilt status --check && echo "back at v1: the work tree matches the v1 pointer"
git checkout -q main
git quilt checkout
git quilt status --check && echo "back at main"
git log --oneline -p -- images.quilt | head -30
# share the data: a directory remote (a shared drive works the same; s3://bucket/prefix for S3)
git quilt remote add origin "$work/remote"
git commit -qm "remote: origin"
git quilt push --all
git clone -q "$work/repo" "$work/clone" && cd "$work/clone"
git quilt pull
diff -r "$work/repo/images" images && echo "fresh clone: git quilt pull restored images/ byte for byte"
