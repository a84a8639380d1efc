"""Core benchmark: hashing, add, no-op status / re-add, checkout and manifest loading.

Prints one table. Every figure is the median of RUNS runs with [min–max] and the peak
resident memory of the process (GNU time's %M), next to a floor or a
competitor measured in the same run, interleaved round by round so that a noisy
machine hits both sides alike:

  (a) hashing 4 × 256 MiB files: gitquilt's ``fill_hashes`` (the code ``add``, ``status``
      and ``checkout`` run; the stat cache is emptied first so every byte is hashed) vs
      the floor, a minimal ``hashlib.sha256`` thread pool (one thread per core, 1 MiB
      reads); coreutils ``sha256sum`` and the whole ``git quilt add`` (hash + copy into
      the cache + sync) for reference. Files are in the page cache for every contender.
  (b) ``git quilt add`` of 10,000 files of 2–64 KiB (random sizes and bytes, fixed seed),
      fresh repository and cache each run, vs ``dvc add`` in a fresh DVC repository;
      for context, vs a floor: a minimal script doing the least an add must (read, hash,
      copy into a fresh fan-out through anonymous files; no sync), one thread per core.
  (c) no-op ``git quilt status`` and no-op re-``add`` vs ``dvc status`` and re-``dvc add``.
  (d) ``git quilt checkout`` into an empty directory vs ``cp -r`` of the same tree.
  (e) loading a manifest of 1,000,000 entries (``read_manifest_file``: decode and full
      validation) vs ``pyarrow.parquet.read_table`` of the same file: time and the peak
      memory the load adds to the process.

Every timed command starts after a ``sync`` (not timed), so that no contender's
writeback is charged to the next. Runs never delete files between timed commands
(on ext4 without a journal, creating files right after a mass deletion is slow, which
would punish whoever runs next); all work directories are made up front and removed at
the end (a previous run's leftovers too). The kernel avoids reusing an inode for 60 s
after its deletion, 360 s while the inode table block is dirty, and each file created
meanwhile scans past them: take figures at least 6 minutes after any large deletion
(another benchmark, a test run).

    python bench/core.py [--runs N] [--work DIR] [--only abcde] [--keep] [--json FILE]

DVC is looked up in /tmp/venv-dvc/bin/dvc, then $DVC, then PATH; without it the DVC
columns say so. Install it in a separate venv: pip install 'dvc[s3]==3.67.*'.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import before_timed, child_command, find_dvc, free_memory_note, fresh_bytecode, sh

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 1234
HASH_FILES, HASH_MIB = 4, 256
SMALL_FILES, SMALL_MIN, SMALL_MAX = 10_000, 2 << 10, 64 << 10
MANIFEST_ENTRIES = 1_000_000
MiB = 1 << 20


# -- measuring -----------------------------------------------------------------------
@dataclass
class Sample:
    wall: float
    cpu: float  # user + system seconds of the process and its waited-for children
    rss_mb: float  # peak resident set size


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def add(self, s: Sample) -> None:
        self.samples.append(s)

    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    def cell(self, unit: str = "s") -> str:
        if not self.samples:
            return "n/a"
        xs = [s.wall for s in self.samples]
        if unit == "ms":
            return f"{statistics.median(xs) * 1000:.0f} ms [{min(xs) * 1000:.0f}–{max(xs) * 1000:.0f}]"
        return f"{statistics.median(xs):.2f} s [{min(xs):.2f}–{max(xs):.2f}]"

    def rss(self) -> str:
        return f"{max(s.rss_mb for s in self.samples):.0f}" if self.samples else ""

    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)


GNU_TIME = "/usr/bin/time"


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[Sample, str]:
    """Run ``cmd``: wall time, CPU time (user + sys) and peak RSS, plus its stdout.

    CPU and memory come from GNU time when present: a process forked from this (large)
    Python process would inherit its memory high-water mark across ``exec``, while
    GNU time's child is forked from a tiny process. Without it: CPU from this process's
    children totals, and no memory figure.

    Every command starts with nothing dirty in the page cache (``sync``, not timed):
    otherwise the writeback of what the previous contender wrote (DVC does not fsync)
    runs during this one, on the same two cores, and a command that makes its own
    writes durable (gitquilt's ``syncfs``) would wait for the other's data too.
    """
    before_timed()
    use_time = os.access(GNU_TIME, os.X_OK)
    stats = Path(tempfile.gettempdir()) / f"gitquilt-bench-time-{os.getpid()}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    full = [GNU_TIME, "-o", str(stats), "-f", "%U %S %M", *cmd] if use_time else cmd
    t0 = time.perf_counter()
    p = subprocess.Popen(full, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} ({p.returncode}):\n{out.decode()}\n{err.decode()}")
    if use_time:
        user, system, rss_kb = stats.read_text().split()[-3:]
        stats.unlink()
        sample = Sample(wall, float(user) + float(system), int(rss_kb) / 1024)
    else:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ru.ru_utime + ru.ru_stime - before.ru_utime - before.ru_stime
        sample = Sample(wall, cpu, 0.0)
    return sample, out.decode()


def child(kind: str, *args: str) -> list[str]:
    """Command line that runs one of this file's in-process measurements in a fresh interpreter."""
    return child_command(__file__, kind, *args)


def child_time(out: str) -> float:
    """In-process measurements print their own elapsed seconds (no interpreter start-up)."""
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


# -- data ----------------------------------------------------------------------------
def make_hash_files(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    paths = []
    for i in range(HASH_FILES):
        p = root / f"big{i}.bin"
        if not (p.exists() and p.stat().st_size == HASH_MIB * MiB):
            with open(p, "wb") as f:
                f.writelines(rng.randbytes(16 * MiB) for _ in range(HASH_MIB // 16))
        paths.append(p)
    return paths


def make_small_tree(root: Path) -> int:
    """10,000 files of 2–64 KiB in 20 directories; returns total bytes."""
    rng = random.Random(SEED)
    total = 0
    for i in range(SMALL_FILES):
        d = root / f"part{i // 500:02d}"
        if i % 500 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(SMALL_MIN, SMALL_MAX)
        (d / f"file{i:05d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


# -- children (run in their own interpreter so that their peak memory is their own) ----
def child_floor_hash(paths: list[str]) -> None:
    """The floor: hashlib.sha256 in a pool of one thread per core, 1 MiB reads."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: str) -> str:
        h = hashlib.sha256()
        with open(p, "rb", buffering=0) as f:
            while chunk := f.read(MiB):
                h.update(chunk)
        return h.hexdigest()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        digests = list(pool.map(one, paths))
    print(json.dumps({"seconds": time.perf_counter() - t0, "digests": digests}))


def child_floor_add(src: str, dst: str) -> None:
    """The floor for (b): the least an add must do, in a minimal script. One thread per
    core, each with a fixed share of the files, reads each file, hashes it and writes
    it to an anonymous file in ``dst``, linked under its digest in a 256-way fan-out.
    No sync (an add makes its fragments durable), no stat cache, manifest or git."""
    import threading

    t0 = time.perf_counter()
    paths = [os.path.join(d, n) for d, _dirs, names in os.walk(src) for n in names]
    for i in range(256):
        os.makedirs(os.path.join(dst, f"{i:02x}"), exist_ok=True)
    proc = os.open("/proc", os.O_RDONLY)

    def share(mine: list[str]) -> None:
        for path in mine:
            fd = os.open(path, os.O_RDONLY)
            try:
                data = os.read(fd, os.fstat(fd).st_size)
            finally:
                os.close(fd)
            digest = hashlib.sha256(data).hexdigest()
            out = os.open(dst, os.O_RDWR | os.O_TMPFILE, 0o644)
            try:
                os.write(out, data)
                os.link(f"self/fd/{out}", f"{dst}/{digest[:2]}/{digest[2:]}", src_dir_fd=proc, follow_symlinks=True)
            except FileExistsError:
                pass
            finally:
                os.close(out)

    n = os.cpu_count() or 1
    threads = [threading.Thread(target=share, args=(paths[k::n],)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"seconds": time.perf_counter() - t0, "files": len(paths)}))


def child_quilt_hash(repo: str, pkg: str) -> None:
    """gitquilt's hashing: scan + fill_hashes with an emptied stat cache (nothing vouched for)."""
    from gitquilt.ops.scan import fill_hashes, scan_package
    from gitquilt.ops.workspace import Workspace

    ws = Workspace.open(repo)
    ref = ws.package_ref(os.path.join(repo, pkg))
    ws.statcache.forget_dir(str(ws.root / ref.path))
    t0 = time.perf_counter()
    scan = scan_package(ws, ref)
    fill_hashes(ws, scan)
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": secs, "digests": sorted(f.sha256 or "" for f in scan.files.values())}))


def child_make_manifest(path: str) -> None:
    """Write a 1,000,000-entry manifest (Parquet) to ``path``; print its top hash."""
    from array import array

    from gitquilt.manifest import Manifest
    from gitquilt.manifest_io import manifest_to_bytes

    rng = random.Random(SEED)
    n = MANIFEST_ENTRIES
    keys = [f"shard{i // 1000:04d}/sample{i:07d}.jpg" for i in range(n)]
    sizes = array("q", (rng.randint(1, 1 << 20) for _ in range(n)))
    m = Manifest(keys, rng.randbytes(32 * n), sizes, bytes(n), None, {"message": "bench"})
    Path(path).write_bytes(manifest_to_bytes(m))
    print(json.dumps({"top_hash": m.top_hash}))


def child_load_manifest(path: str, top: str, how: str) -> None:
    """Load the manifest; report seconds and the peak RSS the load added."""
    import gc

    import pyarrow.parquet as pq

    from gitquilt.manifest_io import read_manifest_file

    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if how == "gitquilt":
        m = read_manifest_file(path, top)
        n = len(m)
    else:
        n = pq.read_table(path).num_rows
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert n == MANIFEST_ENTRIES
    print(json.dumps({"seconds": secs, "added_mb": (after - before) / 1024}))


CHILDREN: dict[str, Callable[..., None]] = {
    "floor-hash": lambda *p: child_floor_hash(list(p)),
    "quilt-hash": child_quilt_hash,
    "make-manifest": child_make_manifest,
    "load-manifest": child_load_manifest,
    "floor-add": child_floor_add,
}


# -- the benchmark ---------------------------------------------------------------------
@dataclass
class Row:
    label: str
    ours: Series
    other_label: str
    other: Series
    ratio: float | None  # as the target states it
    ratio_text: str
    target: str
    holds: bool | None
    unit: str = "s"
    note: str = ""


class Bench:
    def __init__(self, work: Path, runs: int, dvc: str | None) -> None:
        self.work = work
        self.runs = runs
        self.dvc = dvc
        self.rows: list[Row] = []
        self.notes: list[str] = []
        bindir = str(Path(sys.executable).parent)
        self.env = dict(
            os.environ,
            PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
            GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com",
            GIT_CONFIG_NOSYSTEM="1", DVC_NO_ANALYTICS="1",
            DVC_GLOBAL_CONFIG_DIR=str(work / "dvc-global"), DVC_SITE_CACHE_DIR=str(work / "dvc-site"),
            OPENBLAS_NUM_THREADS="1",
        )
        self.env.pop("QUILT_CACHE_DIR", None)
        # as on a normal install, gitquilt's bytecode is cached (DVC's came compiled with it)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def git_repo(self, path: Path, quilt: bool = True) -> Path:
        path.mkdir(parents=True)
        sh(["git", "init", "-q", "-b", "main"], path, self.env)
        if quilt:
            sh(["git", "quilt", "init", "--no-install"], path, self.env)
        return path

    def dvc_repo(self, path: Path) -> Path:
        assert self.dvc
        self.git_repo(path, quilt=False)
        sh([self.dvc, "init", "-q"], path, self.env)
        return path

    # (a)
    def hashing(self) -> None:
        repo = self.git_repo(self.work / "hash-repo")
        files = make_hash_files(repo / "big")
        warm(files)
        total_mib = HASH_FILES * HASH_MIB
        floor, quilt, coreutils, add = Series(), Series(), Series(), Series()
        floor_digests = None
        for r in range(self.runs):
            s, out = timed(child("floor-hash", *map(str, files)), repo, self.env)
            s.wall = child_time(out)
            floor_digests = sorted(json.loads(out.splitlines()[-1])["digests"])
            floor.add(s)
            s, out = timed(child("quilt-hash", str(repo), "big"), repo, self.env)
            s.wall = child_time(out)
            if sorted(json.loads(out.splitlines()[-1])["digests"]) != floor_digests:
                raise SystemExit("gitquilt and hashlib disagree on the digests")
            quilt.add(s)
            s, _ = timed(["sha256sum", *map(str, files)], repo, self.env)
            coreutils.add(s)
            # the whole add: hash + copy into a fresh cache + sync
            env = dict(self.env, QUILT_CACHE_DIR=str(self.work / f"hash-cache-{r}"))
            s, _ = timed(["git", "quilt", "-q", "add", "--no-stage", "big"], repo, env)
            add.add(s)
            os.unlink(repo / "big.quilt")

        def mibs(s: Series) -> str:
            return f"{total_mib / s.median():.0f} MiB/s"

        share = floor.median() / quilt.median()
        self.rows.append(Row(
            "(a) hash 4×256 MiB: gitquilt fill_hashes", quilt, f"floor: hashlib pool ({os.cpu_count()} thr)",
            floor, share, f"{share:.0%} of floor", "≥ 80 % of floor", share >= 0.80,
            note=f"gitquilt {mibs(quilt)}, floor {mibs(floor)}",
        ))
        self.rows.append(Row(
            "(a) … coreutils sha256sum (1 process)", coreutils, "floor: hashlib pool", floor,
            None, f"{floor.median() / coreutils.median():.0%} of floor", "reference", None,
            note=f"sha256sum {mibs(coreutils)}",
        ))
        self.rows.append(Row(
            "(a) … git quilt add (hash+copy+sync)", add, "floor: hashlib pool", floor,
            None, f"{floor.median() / add.median():.0%} of floor", "reference", None,
            note=f"add {mibs(add)} incl. writing 1 GiB into the cache",
        ))

    # (b), (c), (d)
    def small_files(self) -> None:
        src = self.work / "src"
        if not src.exists():
            make_small_tree(src)
        total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
        self.notes.append(f"small-file package: {SMALL_FILES} files, {total / MiB:.0f} MiB")
        # every repository is made before anything is timed: no deletions between timed runs
        gq, dv = [], []
        for r in range(self.runs):
            g = self.git_repo(self.work / f"gq-{r}")
            shutil.copytree(src, g / "data")
            gq.append(g)
            if self.dvc:
                d = self.dvc_repo(self.work / f"dvc-{r}")
                shutil.copytree(src, d / "data")
                dv.append(d)
        os.sync()
        time.sleep(1.0)  # every file's mtime is now well past the racy-clean window

        add, dadd, floor = Series(), Series(), Series()
        for r in range(self.runs):
            add.add(timed(["git", "quilt", "add", "data"], gq[r], self.env)[0])
            if self.dvc:
                dadd.add(timed([self.dvc, "add", "-q", "data"], dv[r], self.env)[0])
            # the whole process, interpreter start-up included, like the commands above
            floor.add(timed(child("floor-add", str(src), str(self.work / f"floor-{r}")), self.work, self.env)[0])
        self._vs_dvc("(b) add 10,000 files (fresh cache)", add, dadd, 3.0)
        ratio = add.median() / floor.median()
        self.rows.append(Row("(b) the same add vs its floor", add, "floor: hash+copy, no sync", floor, ratio,
                             f"{ratio:.2f}× floor", "(context)", None))

        for r in range(self.runs):  # commit, so that --check can insist on "clean"
            sh(["git", "commit", "-qm", "data"], gq[r], self.env)
            if self.dvc:
                sh(["git", "add", "data.dvc", ".gitignore"], dv[r], self.env)
                sh(["git", "commit", "-qm", "data"], dv[r], self.env)
        status, dstatus, readd, dreadd = Series(), Series(), Series(), Series()
        for r in range(self.runs):
            s, out = timed(["git", "quilt", "status", "--check"], gq[r], self.env)
            assert ": clean" in out, out
            status.add(s)
            if self.dvc:
                s, _ = timed([self.dvc, "status", "-q"], dv[r], self.env)
                dstatus.add(s)
            s, out = timed(["git", "quilt", "add", "data"], gq[r], self.env)
            assert "(unchanged)" in out, out  # a no-op indeed
            readd.add(s)
            if self.dvc:
                dreadd.add(timed([self.dvc, "add", "-q", "data"], dv[r], self.env)[0])
        self._vs_dvc("(c) no-op status", status, dstatus, 3.0, unit="ms")
        self._vs_dvc("(c) no-op re-add", readd, dreadd, 3.0, unit="ms")

        # (d): fresh clones whose package directory was never there; a shared warm cache
        cache = gq[0] / ".git" / "quilt"
        env = dict(self.env, QUILT_CACHE_DIR=str(cache))
        clones = []
        for r in range(self.runs):
            c = self.work / f"clone-{r}"
            sh(["git", "clone", "-q", str(gq[0]), str(c)], self.work, self.env)
            (self.work / f"cp-{r}").mkdir()
            clones.append(c)
        os.sync()
        co, cp = Series(), Series()
        for r in range(self.runs):
            cp.add(timed(["cp", "-r", str(gq[0] / "data"), str(self.work / f"cp-{r}" / "data")], self.work, env)[0])
            co.add(timed(["git", "quilt", "checkout", "data"], clones[r], env)[0])
        ratio = co.median() / cp.median()
        self.rows.append(Row(
            "(d) checkout into empty dir", co, "floor: cp -r", cp, ratio, f"{ratio:.2f}× floor",
            "≤ 1.5× floor", ratio <= 1.5,
        ))

    def _vs_dvc(self, label: str, ours: Series, dvc: Series, factor: float, unit: str = "s") -> None:
        if not dvc.samples:
            self.rows.append(Row(label, ours, "dvc 3.67", dvc, None, "dvc not installed",
                                 f"≥ {factor:.0f}× faster", None, unit))
            return
        speed = dvc.median() / ours.median()
        self.rows.append(Row(label, ours, "dvc", dvc, speed, f"{speed:.1f}× faster",
                             f"≥ {factor:.0f}× faster", speed >= factor, unit))

    # (e)
    def manifest(self) -> None:
        d = self.work / "manifest"
        d.mkdir(parents=True, exist_ok=True)
        path = d / "m.parquet"
        out = sh(child("make-manifest", str(path)), d, self.env)
        top = json.loads(out.strip().splitlines()[-1])["top_hash"]
        ours, floor = Series(), Series()
        ours_mb: list[float] = []
        floor_mb: list[float] = []
        for _ in range(self.runs):
            for how, series, mem in (("gitquilt", ours, ours_mb), ("pyarrow", floor, floor_mb)):
                s, out = timed(child("load-manifest", str(path), top, how), d, self.env)
                res = json.loads(out.strip().splitlines()[-1])
                s.wall = res["seconds"]
                mem.append(res["added_mb"])
                series.add(s)
        added = statistics.median(ours_mb)
        ok = ours.median() < 1.0 and added < 300
        self.rows.append(Row(
            "(e) load 1,000,000-entry manifest", ours, "floor: pq.read_table", floor,
            ours.median(), f"+{added:.0f} MB (floor +{statistics.median(floor_mb):.0f} MB)",
            "< 1 s, < 300 MB added", ok,
            note=f"file {path.stat().st_size / MiB:.0f} MiB",
        ))

    # -- output ----------------------------------------------------------------------
    def table(self) -> str:
        head = ("measure", "gitquilt median [min–max]", "MB", "vs", "median [min–max]", "MB", "result", "target", "ok")
        lines = []
        for r in self.rows:
            ok = "–" if r.holds is None else ("yes" if r.holds else "NO")
            lines.append((r.label, r.ours.cell(r.unit), r.ours.rss(), r.other_label, r.other.cell(r.unit),
                          r.other.rss(), r.ratio_text, r.target, ok))
        widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        cpu = [f"  {r.label}: {r.ours.cpu():.2f} s vs {r.other_label} {r.other.cpu():.2f} s"
               for r in self.rows if r.ours.samples and r.other.samples and r.ours.samples[0].cpu]
        extra = [f"  {r.label}: {r.note}" for r in self.rows if r.note]
        return "\n".join(out + ["", "notes:"] + [f"  {n}" for n in self.notes] + extra
                         + ["", "median CPU time (user+sys) per run:"] + cpu)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        CHILDREN[sys.argv[2]](*sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median reported; ≥ 3)")
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "bench-work" / "core", help="scratch directory")
    ap.add_argument("--only", default="abcde", help="sections to run, e.g. 'bcd'")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    fresh_bytecode()
    runs = max(3, args.runs)
    work = args.work.resolve()
    old = None
    if work.exists():  # set aside, removed at the end: no mass deletion before the timed runs
        old = work.with_name(f"{work.name}.old-{os.getpid()}")
        work.rename(old)
    work.mkdir(parents=True)
    dvc = find_dvc()
    bench = Bench(work, runs, dvc)
    dvc_version = sh([dvc, "--version"], work, bench.env).strip() if dvc else "not installed"
    started = time.time()
    try:
        if "a" in args.only:
            bench.hashing()
        if "b" in args.only or "c" in args.only or "d" in args.only:
            bench.small_files()
        if "e" in args.only:
            bench.manifest()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    if note := free_memory_note():
        bench.notes.append(note)
    load = os.getloadavg()
    print(f"gitquilt core benchmark: {runs} runs each, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f}/{load[1]:.1f}, dvc {dvc_version}, {time.time() - started:.0f} s")
    print("times: median [min–max] of the runs; MB: peak RSS of the process (largest run)")
    print(bench.table())
    if args.json:
        args.json.write_text(json.dumps([
            {"measure": r.label, "gitquilt": [s.__dict__ for s in r.ours.samples], "vs": r.other_label,
             "other": [s.__dict__ for s in r.other.samples], "result": r.ratio_text, "target": r.target,
             "holds": r.holds} for r in bench.rows], indent=1))


if __name__ == "__main__":
    main()
