#!/usr/bin/env bash
# Retrain from a tagged commit on a clean machine and check that the result is the
# model the tag pins (docs/ci.md).
#
#   retrain_from_tag.sh REPO_URL TAG MODEL_PACKAGE [JOB_COMMAND...]
#
# 1. clones REPO_URL at TAG into a new, empty directory, with an empty gitquilt cache
#    (QUILT_CACHE_DIR points at a new directory): nothing comes from this machine;
# 2. `git quilt pull`: fetches the data the tag pins, from the remote in .gitquilt.toml;
# 3. deletes MODEL_PACKAGE's directory and runs JOB_COMMAND in the clone (default:
#    `python3 train.py`), which must write it again;
# 4. `git quilt add MODEL_PACKAGE` (same message and metadata as the pinned one) and
#    compares its top hash with the one the tag pins.
# Exit 0: reproduced. Exit 1: the rebuilt model differs (the differing files are
# listed). Exit 2: bad usage. Any other failure exits non-zero with git's or gitquilt's
# message. Set CI_WORK_DIR to choose where the clone goes (it must not exist yet) and
# KEEP_WORK=1 to keep it afterwards.
set -euo pipefail

if [ $# -lt 3 ]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
repo_url=$1
tag=$2
model=${3%/}
shift 3
[ $# -gt 0 ] || set -- python3 train.py
here=$(cd "$(dirname "$0")" && pwd)

work=${CI_WORK_DIR:-}
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/retrain.XXXXXX")
    rmdir "$work"
fi
if [ -e "$work" ]; then
    echo "retrain: $work already exists; give CI_WORK_DIR a new path" >&2
    exit 2
fi
mkdir -p "$work"
if [ "${KEEP_WORK:-0}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi
export QUILT_CACHE_DIR="$work/cache"   # a new, empty cache: every byte comes from the remote
mkdir "$QUILT_CACHE_DIR"

echo "retrain: cloning $tag into $work/src"
git clone --quiet --depth 1 --branch "$tag" "$repo_url" "$work/src"
cd "$work/src"
if [ ! -f "$model.quilt" ]; then
    echo "retrain: $tag pins no package $model ($model.quilt is missing)" >&2
    exit 2
fi
pinned=$(sed -n 's/^top_hash = "\([0-9a-f]\{64\}\)"$/\1/p' "$model.quilt")

echo "retrain: fetching the data $tag pins"
git quilt pull

mapfile -t add_args < <(python3 "$here/package_meta.py" add-args "$model")
rm -rf "$model"
echo "retrain: running: $*"
"$@"
if [ ! -e "$model" ]; then
    echo "retrain: the job did not write $model" >&2
    exit 1
fi
git quilt add --no-stage ${add_args[@]+"${add_args[@]}"} "$model" >/dev/null
rebuilt=$(sed -n 's/^top_hash = "\([0-9a-f]\{64\}\)"$/\1/p' "$model.quilt")

if [ "$rebuilt" = "$pinned" ]; then
    echo "retrain: reproduced $model at $tag: top hash $rebuilt"
    exit 0
fi
echo "retrain: MISMATCH for $model at $tag: the tag pins $pinned, the job produced $rebuilt" >&2
python3 "$here/package_meta.py" diff "$model" "$pinned" "$rebuilt" >&2 || true
exit 1
