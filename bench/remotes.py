"""Remote benchmark: push and fresh-clone pull, to S3 (moto on loopback) and to a directory remote.

Data sets (fixed seed):
  small  10,000 files of 2–64 KiB (random sizes and bytes, ~330 MB)
  tiny   100,000 files of 1–16 KiB (~850 MB; issue 4's small-file packs; DVC skipped unless --tiny-dvc)
  big    4 files of 256 MiB

For each set and target, every round runs (interleaved, so a noisy machine hits all alike):
  floor     a plain thread pool (-j threads) with no hashing: boto3 ``put_object`` of each
            whole file read into memory / ``get_object`` of each key written to a file; for the
            directory target, ``shutil.copyfile`` of each file both ways (nothing made durable:
            the copy may still sit in the page cache when it "finishes");
  floor+fsync  (directory target only) the same copies, each followed by an ``fsync`` of the
            file in the thread that copied it: the durability gitquilt gives (its remote and
            cache writes survive a power cut). Both floors are shown; neither replaces the other;
  gitquilt  ``git quilt push`` of the added package to an empty remote; then ``git clone`` of
            the repository (not timed) and ``git quilt pull`` (fetch + checkout) with an empty cache;
  DVC       ``dvc push`` / fresh-clone ``dvc pull`` with the same -j (when ``dvc`` is found in
            --dvc-venv, $DVC or PATH).
It prints medians of the rounds with [min–max], requests (gitquilt's own count from --json;
the floor makes one per file, plus listing pages on pull) and peak resident memory (GNU
time's %M) of each process; plus a no-op push (requests, seconds).

moto runs in its own process (python -c ThreadedMotoServer on 127.0.0.1, port 0), so its
memory and CPU are not charged to the contenders; every bucket is emptied after its round
(not timed), so that moto's memory stays bounded. Local directories holding many files
(the small and tiny sets' floor copies, clones, caches and directory remotes) are removed
only after the last round: on ext4 without a journal, creating files right after a mass
deletion is several times slower for a while, and the floor's copy used to be deleted
just before gitquilt's pull ran. The big set's few files are removed after each round.

    python bench/remotes.py [--runs 3] [--big-runs 3] [--tiny-runs 1] [--sets small,tiny,big] [--targets moto,dir]
                            [--jobs 32] [--dvc-venv /tmp/venv-dvc] [--no-dvc] [--work DIR] [--json FILE]
                            [--gitquilt-path DIR] [--no-floor tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import before_timed, child_command, find_dvc, free_memory_note, fresh_bytecode, sh

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 4321
MiB = 1 << 20
GNU_TIME = "/usr/bin/time"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


# -- measuring -----------------------------------------------------------------------------
@dataclass
class Sample:
    wall: float
    rss_mb: float | None  # None without GNU time
    requests: int | None = None


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def cell(self) -> str:
        if not self.samples:
            return "n/a"
        xs = [s.wall for s in self.samples]
        return f"{statistics.median(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]"

    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples) if self.samples else float("nan")

    def rss(self) -> str:
        """Peak resident memory of the process tree (GNU time's %M: the largest of the
        command and every child it waited for, e.g. git and the git-quilt it runs)."""
        known = [s.rss_mb for s in self.samples if s.rss_mb is not None]
        return f"{max(known):.0f}" if known else "n/a"

    def requests(self) -> str:
        rs = [s.requests for s in self.samples if s.requests is not None]
        return str(int(statistics.median(rs))) if rs else "n/a"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[Sample, str]:
    """Wall time and peak RSS (GNU time) of a command; fails loudly.

    Every command starts with nothing dirty in the page cache (``sync``, not timed): the
    writeback of what ran before — the previous contender's files, moto spooling the
    objects just pushed — would otherwise run during this command on the same two cores.
    """
    before_timed()
    stats = Path(tempfile.gettempdir()) / f"gq-remote-bench-{os.getpid()}"
    use_time = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-o", str(stats), "-f", "%M", *cmd] if use_time else cmd
    t0 = time.perf_counter()
    p = subprocess.run(full, cwd=cwd, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} ({p.returncode}):\n{p.stdout.decode()}\n{p.stderr.decode()}")
    rss: float | None = None
    if use_time:
        rss = int(stats.read_text().split()[-1]) / 1024
        stats.unlink()
    return Sample(wall, rss), p.stdout.decode()


def child(kind: str, *args: str) -> list[str]:
    """Command line that runs one of this file's in-process measurements in a fresh interpreter."""
    return child_command(__file__, kind, *args)


# -- data --------------------------------------------------------------------------------------
def make_small(root: Path, n: int = 10_000) -> None:
    if (root / ".complete").exists():
        return
    rng = random.Random(SEED)
    for i in range(n):
        d = root / f"part{i // 500:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(2 << 10, 64 << 10)))
    (root / ".complete").touch()


def make_tiny(root: Path, n: int = 100_000) -> None:
    if (root / ".complete").exists():
        return
    rng = random.Random(SEED + 1)
    for i in range(n):
        d = root / f"part{i // 1000:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(1 << 10, 16 << 10)))
    (root / ".complete").touch()


def make_big(root: Path, mib: int = 256) -> None:
    if (root / ".complete").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    for i in range(4):
        with open(root / f"model{i}.bin", "wb") as f:
            f.writelines(rng.randbytes(16 * MiB) for _ in range(mib // 16))
    (root / ".complete").touch()


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".complete")


# -- children: the floors and moto -------------------------------------------------------------
def _client(endpoint: str, jobs: int) -> object:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=jobs + 4))


def child_floor_push_s3(src: str, endpoint: str, bucket: str, prefix: str, jobs: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = int(jobs)
    client = _client(endpoint, n)
    files = data_files(Path(src))

    def one(p: Path) -> None:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{p.relative_to(src).as_posix()}", Body=p.read_bytes())  # type: ignore[attr-defined]

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, files))
    print(json.dumps({"requests": len(files)}))


def child_floor_pull_s3(dest: str, endpoint: str, bucket: str, prefix: str, jobs: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    n = int(jobs)
    client = _client(endpoint, n)
    keys, pages = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):  # type: ignore[attr-defined]
        pages += 1
        keys += [o["Key"] for o in page.get("Contents", ())]

    def one(key: str) -> None:
        target = Path(dest) / key[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[attr-defined]

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(one, keys))
    print(json.dumps({"requests": len(keys) + pages}))


def child_floor_copy(src: str, dest: str, jobs: str, sync: str = "0") -> None:
    """``shutil.copyfile`` of each file; with ``sync`` "1", each copy is then fsync-ed
    (and each directory that gained names, once), as durable as gitquilt's writes."""
    from concurrent.futures import ThreadPoolExecutor

    files = data_files(Path(src))
    dirs = {(Path(dest) / p.relative_to(src)).parent for p in files}
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    durable = sync == "1"

    def one(p: Path) -> None:
        target = Path(dest) / p.relative_to(src)
        shutil.copyfile(p, target)
        if durable:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def fsync_dir(d: Path) -> None:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(int(jobs)) as pool:
        list(pool.map(one, files))
        if durable:
            list(pool.map(fsync_dir, sorted(dirs)))
    print(json.dumps({"requests": len(files)}))


def child_moto() -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


# -- the contenders -----------------------------------------------------------------------------
@dataclass
class Target:
    kind: str  # moto or dir
    endpoint: str = ""
    admin: object = None

    def new_location(self, work: Path, tag: str) -> tuple[str, str]:
        """(gitquilt/DVC URL, floor location) of a fresh, empty remote."""
        if self.kind == "moto":
            bucket = f"b-{tag}-{uuid.uuid4().hex[:10]}"
            self.admin.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
            return f"s3://{bucket}/data", bucket
        path = work / "remotes" / f"{tag}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path), str(path)

    def drop(self, location: str) -> None:
        if self.kind == "moto":
            admin = self.admin
            for page in admin.get_paginator("list_objects_v2").paginate(Bucket=location):  # type: ignore[attr-defined]
                objs = [{"Key": o["Key"]} for o in page.get("Contents", ())]
                if objs:
                    admin.delete_objects(Bucket=location, Delete={"Objects": objs})  # type: ignore[attr-defined]
            for u in admin.list_multipart_uploads(Bucket=location).get("Uploads", ()):  # type: ignore[attr-defined]
                admin.abort_multipart_upload(Bucket=location, Key=u["Key"], UploadId=u["UploadId"])  # type: ignore[attr-defined]
            admin.delete_bucket(Bucket=location)  # type: ignore[attr-defined]
        else:
            shutil.rmtree(location, ignore_errors=True)


def setup_gitquilt(work: Path, name: str, data: Path, env: dict[str, str]) -> Path:
    repo = work / f"gq-{data.name}"
    if (repo / ".git").exists():
        return repo
    repo.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh(["git", "quilt", "init"], repo, env)
    shutil.copytree(data, repo / "data", ignore=shutil.ignore_patterns(".complete"))
    sh(["git", "quilt", "add", "data"], repo, env)
    sh(["git", "commit", "-qm", "data"], repo, env)
    return repo


def setup_dvc(work: Path, name: str, data: Path, env: dict[str, str], dvc: str) -> Path:
    repo = work / f"dvc-{data.name}"
    if (repo / ".dvc").exists():
        return repo
    repo.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    sh([dvc, "init", "-q"], repo, env)
    shutil.copytree(data, repo / "data", ignore=shutil.ignore_patterns(".complete"))
    sh([dvc, "add", "-q", "data"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "data"], repo, env)
    return repo


def git_clone(src: Path, dest: Path, env: dict[str, str]) -> None:
    sh(["git", "clone", "-q", str(src), str(dest)], src.parent, env)


def _series() -> dict[str, Series]:
    return {"floor": Series(), "floor+fsync": Series(), "gitquilt": Series(), "dvc": Series()}


@dataclass
class Row:
    push: dict[str, Series] = field(default_factory=_series)
    pull: dict[str, Series] = field(default_factory=_series)
    noop: Series = field(default_factory=Series)


#: Local directories of many files, removed after the last round (see the module docstring).
DEFERRED: list[Path] = []


def _remove_later(set_name: str, path: Path | str) -> None:
    """Remove ``path`` now if it holds the big set's few files, else after the last round."""
    if set_name == "big":
        shutil.rmtree(path, ignore_errors=True)
    else:
        DEFERRED.append(Path(path))


def run_round(set_name: str, data: Path, target: Target, work: Path, env: dict[str, str], jobs: int,
              row: Row, dvc: str | None, rnd: int, floor: bool = True) -> None:
    tag = f"{set_name}{rnd}"
    scratch = work / "scratch" / f"{target.kind}-{tag}-{uuid.uuid4().hex[:6]}"
    scratch.mkdir(parents=True)
    cleanup: list[str] = []
    try:
        # floor
        url, loc = target.new_location(work, f"floor{tag}")
        cleanup.append(loc)
        if not floor:
            pass
        elif target.kind == "moto":
            s, out = timed(child("floor-push-s3", str(data), target.endpoint, loc, "data", str(jobs)), work, env)
            s.requests = json.loads(out)["requests"]
            row.push["floor"].samples.append(s)
            s, out = timed(child("floor-pull-s3", str(scratch / "floor"), target.endpoint, loc, "data", str(jobs)),
                           work, env)
        else:
            s, out = timed(child("floor-copy", str(data), loc, str(jobs)), work, env)
            s.requests = json.loads(out)["requests"]
            row.push["floor"].samples.append(s)
            s, out = timed(child("floor-copy", loc, str(scratch / "floor"), str(jobs)), work, env)
        if floor:
            s.requests = json.loads(out)["requests"]
            row.pull["floor"].samples.append(s)
        if floor and target.kind == "dir":  # the same copies made durable, as gitquilt's are
            subprocess.run(["sync"], check=False)  # the plain floor's dirty pages are not charged here
            url, loc = target.new_location(work, f"floorsync{tag}")
            cleanup.append(loc)
            s, out = timed(child("floor-copy", str(data), loc, str(jobs), "1"), work, env)
            s.requests = json.loads(out)["requests"]
            row.push["floor+fsync"].samples.append(s)
            s, out = timed(child("floor-copy", loc, str(scratch / "floor-sync"), str(jobs), "1"), work, env)
            s.requests = json.loads(out)["requests"]
            row.pull["floor+fsync"].samples.append(s)
            _remove_later(set_name, scratch / "floor-sync")
        _remove_later(set_name, scratch / "floor")
        subprocess.run(["sync"], check=False)  # floors' writeback is not charged to gitquilt

        # gitquilt
        repo = setup_gitquilt(work, set_name, data, env)
        url, loc = target.new_location(work, f"gq{tag}")
        cleanup.append(loc)
        name = f"r{uuid.uuid4().hex[:8]}"
        extra = ["--endpoint-url", target.endpoint, "--region", "us-east-1"] if target.kind == "moto" else []
        sh(["git", "quilt", "remote", "add", name, url, "--default", *extra], repo, env)
        sh(["git", "commit", "-qm", f"remote {name}"], repo, env)
        s, out = timed(["git", "quilt", "push", "--remote", name, "-j", str(jobs), "--json"], repo, env)
        s.requests = json.loads(out)["requests"]
        row.push["gitquilt"].samples.append(s)
        s, out = timed(["git", "quilt", "push", "--remote", name, "-j", str(jobs), "--json"], repo, env)
        s.requests = json.loads(out)["requests"]
        row.noop.samples.append(s)
        clone = scratch / "gq-clone"
        git_clone(repo, clone, env)
        s, out = timed(["git", "quilt", "pull", "--remote", name, "-j", str(jobs), "--json"], clone, env)
        s.requests = json.loads(out)["fetch"]["requests"]
        row.pull["gitquilt"].samples.append(s)

        # DVC (a failure is reported, not fatal: the other columns still count)
        if dvc is not None:
            try:
                _dvc_round(set_name, data, target, work, env, jobs, row, dvc, tag, scratch, cleanup)
            except SystemExit as exc:
                print(f"DVC failed this round: {str(exc)[-300:]}", file=sys.stderr, flush=True)
    finally:
        for loc in cleanup:
            if target.kind == "moto":
                target.drop(loc)
            else:
                _remove_later(set_name, loc)
        _remove_later(set_name, scratch)
        subprocess.run(["sync"], check=False)


def _dvc_round(set_name: str, data: Path, target: Target, work: Path, env: dict[str, str], jobs: int, row: Row,
               dvc: str, tag: str, scratch: Path, cleanup: list[str]) -> None:
    """``dvc push`` to a fresh remote, then ``dvc pull`` in a fresh clone."""
    drepo = setup_dvc(work, set_name, data, env, dvc)
    url, loc = target.new_location(work, f"dvc{tag}")
    cleanup.append(loc)
    dname = f"r{uuid.uuid4().hex[:8]}"
    sh([dvc, "remote", "add", "-d", "-f", dname, url], drepo, env)
    if target.kind == "moto":
        sh([dvc, "remote", "modify", dname, "endpointurl", target.endpoint], drepo, env)
    sh(["git", "add", "-A"], drepo, env)
    sh(["git", "commit", "-qm", f"remote {dname}"], drepo, env)
    s, _ = timed([dvc, "push", "-q", "-r", dname, "-j", str(jobs)], drepo, env)
    row.push["dvc"].samples.append(s)
    dclone = scratch / "dvc-clone"
    git_clone(drepo, dclone, env)
    s, _ = timed([dvc, "pull", "-q", "-r", dname, "-j", str(jobs)], dclone, env)
    row.pull["dvc"].samples.append(s)


def _ratio(g: Series, f: Series) -> str:
    return f"{g.median() / f.median():.2f}×" if f.samples and g.samples else "–"


def table(results: dict[tuple[str, str], Row], has_dvc: bool) -> str:
    """The results table. ``floor+fsync`` (directory target) is the plain copy made as
    durable as gitquilt's writes; ``–`` where a column does not apply (moto has no such floor)."""
    lines = [
        ("| set | target | op | floor s | floor+fsync s | gitquilt s | gq / floor | gq / floor+fsync | DVC s "
         "| requests floor / gitquilt | peak MB floor / floor+fsync / gitquilt / DVC |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (set_name, target), row in results.items():
        for op in ("push", "pull"):
            series = getattr(row, op)
            f, fs, g, d = series["floor"], series["floor+fsync"], series["gitquilt"], series["dvc"]
            synced = fs.cell() if fs.samples else "–"
            lines.append(
                f"| {set_name} | {target} | {op} | {f.cell()} | {synced} | {g.cell()} | {_ratio(g, f)} | "
                f"{_ratio(g, fs)} | {d.cell() if has_dvc else 'not run'} | {f.requests()} / {g.requests()} | "
                f"{f.rss()} / {fs.rss() if fs.samples else '–'} / {g.rss()} / {d.rss() if has_dvc else 'n/a'} |"
            )
        lines.append(f"| {set_name} | {target} | no-op push | | | {row.noop.cell()} | | | | – / {row.noop.requests()} | "
                     f"– / – / {row.noop.rss()} / – |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-runs", type=int, default=3)
    ap.add_argument("--tiny-runs", type=int, default=1)
    ap.add_argument("--tiny-files", type=int, default=100_000, help="(smoke tests) files in the tiny set")
    ap.add_argument("--tiny-dvc", action="store_true", help="run DVC on the tiny set too (slow)")
    ap.add_argument("--no-floor", default="", help="comma-separated sets whose floor is not run (e.g. tiny: "
                    "100,000 requests each way take minutes; its target is absolute)")
    ap.add_argument("--sets", default="small,tiny,big")
    ap.add_argument("--targets", default="moto,dir")
    ap.add_argument("--jobs", type=int, default=32)
    ap.add_argument("--dvc-venv", default="/tmp/venv-dvc")
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--work", default=str(REPO_ROOT / "bench-work" / "remotes"))
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--small-files", type=int, default=10_000, help="(smoke tests) files in the small set")
    ap.add_argument("--big-mib", type=int, default=256, help="(smoke tests) MiB per file of the big set")
    ap.add_argument("--gitquilt-path", help="benchmark the gitquilt package found in this directory "
                    "(put first on PYTHONPATH), e.g. an exported commit, instead of the installed one")
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        {"floor-push-s3": child_floor_push_s3, "floor-pull-s3": child_floor_pull_s3, "floor-copy": child_floor_copy,
         "moto": child_moto}[kind](*rest)
        return

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **FAKE_AWS, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.com")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("QUILT_CACHE_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a normal install: bytecode is cached
    if args.gitquilt_path:
        env["PYTHONPATH"] = str(Path(args.gitquilt_path).resolve())
    fresh_bytecode(Path(args.gitquilt_path).resolve() if args.gitquilt_path else None)
    dvc = None if args.no_dvc else find_dvc(args.dvc_venv)
    sets = [s for s in args.sets.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    datasets = {"small": work / f"data-small-{args.small_files}", "big": work / f"data-big-{args.big_mib}",
                "tiny": work / f"data-tiny-{args.tiny_files}"}
    unknown = [x for x in sets if x not in datasets] + [x for x in targets if x not in ("moto", "dir")]
    if unknown:
        ap.error(f"unknown set or target: {', '.join(unknown)} (sets: small, tiny, big; targets: moto, dir)")
    for s in sets:
        if s == "small":
            make_small(datasets[s], args.small_files)
        elif s == "tiny":
            make_tiny(datasets[s], args.tiny_files)
        else:
            make_big(datasets[s], args.big_mib)

    moto = None
    results: dict[tuple[str, str], Row] = {}
    try:
        tgt: dict[str, Target] = {}
        if "moto" in targets:
            moto = subprocess.Popen(child("moto"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
            assert moto.stdout is not None
            port = int(moto.stdout.readline())
            endpoint = f"http://127.0.0.1:{port}"
            import boto3

            admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                 aws_access_key_id="bench", aws_secret_access_key="bench-secret")
            tgt["moto"] = Target("moto", endpoint, admin)
        if "dir" in targets:
            tgt["dir"] = Target("dir")
        for s in sets:
            runs = {"small": args.runs, "tiny": args.tiny_runs}.get(s, args.big_runs)
            set_dvc = None if s == "tiny" and not args.tiny_dvc else dvc
            for t in targets:
                row = results.setdefault((s, t), Row())
                for rnd in range(runs):
                    print(f"[{time.strftime('%H:%M:%S')}] {s} → {t}, round {rnd + 1}/{runs}", file=sys.stderr, flush=True)
                    run_round(s, datasets[s], tgt[t], work, env, args.jobs, row, set_dvc, rnd,
                              floor=s not in args.no_floor.split(","))
    finally:
        if moto is not None:
            assert moto.stdin is not None
            moto.stdin.close()
            moto.wait(timeout=30)
        for path in DEFERRED:
            shutil.rmtree(path, ignore_errors=True)
    print(f"\nmedian [min–max] seconds of {args.runs} (small) / {args.tiny_runs} (tiny) / {args.big_runs} (big) "
          f"rounds, -j {args.jobs}, "
          f"{os.cpu_count()} CPUs; DVC: {dvc or 'not found'}\n")
    print(table(results, dvc is not None))
    if note := free_memory_note():
        print(note)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            f"{s}/{t}": {op: {k: [x.__dict__ for x in v.samples] for k, v in getattr(row, op).items()}
                         for op in ("push", "pull")} | {"noop": [x.__dict__ for x in row.noop.samples]}
            for (s, t), row in results.items()
        }, indent=2))


if __name__ == "__main__":
    main()
