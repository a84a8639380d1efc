"""End to end with a bare git remote on disk and a gitquilt remote: pre-push uploads
before git sends refs, a fresh clone travels between tags, hooks survive a dead
network, the merge driver fetches what it lacks, and the CI retrain recipe works.

RELIABILITY.md §8 items 47, 48, 50 (49, 51–53 are in test_hooks_local.py).
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Repo, quilt_env, run
from tests.remotes.conftest import aws_env, moto_url  # noqa: F401 - the remotes suite's moto server, reused

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
V1 = {"a.txt": b"a1", "b.txt": b"b1", "sub/c.txt": b"c1"}
V2 = {"a.txt": b"a2", "b.txt": b"b1", "d.txt": b"d2"}


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def top_of(pointer_text: str) -> str:
    return pointer_text.split('top_hash = "')[1][:64]


@dataclass
class World:
    author: Repo
    origin: Path  # bare git repository
    store: Path  # directory gitquilt remote (unused for S3)
    tmp: Path
    kind: str = "directory"
    remote_args: tuple[str, ...] = ()

    def has_manifest(self, top: str) -> bool:
        if self.kind == "directory":
            return (self.store / "manifests" / f"{top}.parquet").is_file()
        import boto3

        bucket_url, endpoint = self.remote_args[0], self.remote_args[2]
        bucket = bucket_url.split("/")[2]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        return s3.list_objects_v2(Bucket=bucket, Prefix=f"data/manifests/{top}.parquet").get("KeyCount", 0) == 1

    def clone(self, name: str, install: bool = True) -> Repo:
        dest = self.tmp / name
        run(["git", "clone", "-q", str(self.origin), str(dest)], self.tmp, self.author.env, check=True)
        repo = Repo(dest, self.author.env)
        if install:
            repo.quilt("install", check=True)
        return repo

    def remote_ref(self, ref: str) -> str:
        r = run(["git", "ls-remote", str(self.origin), ref], self.tmp, self.author.env, check=True)
        return r.stdout.split("\t")[0]


@pytest.fixture
def kind() -> str:
    """The gitquilt remote kind; tests that also run against S3 parametrize it."""
    return "directory"


both_kinds = pytest.mark.parametrize("kind", ["directory", "s3"])


def _publish(base: Path, remote_args: list[str], origin_url: str) -> Repo:
    """In ``base``: a bare origin.git and an author clone (hooks installed) that pushed
    v1 (tag) and v2 (main) with its data to the gitquilt remote ``remote_args``."""
    env = quilt_env()
    run(["git", "init", "-q", "--bare", "-b", "main", str(base / "origin.git")], base, env, check=True)
    (base / "author").mkdir()
    author = Repo(base / "author", env)
    author.git("init", "-q", "-b", "main")
    author.quilt("init", "--install", check=True)
    author.quilt("remote", "add", "origin", *remote_args, "--default", check=True)
    author.git("remote", "add", "origin", origin_url)
    author.write("images/a.txt", "a1")
    author.write("images/b.txt", "b1")
    author.write("images/sub/c.txt", "c1")
    author.quilt("add", "images", check=True)
    author.git("add", "-A")
    author.git("commit", "-qm", "v1")
    author.git("tag", "v1")
    author.write("images/a.txt", "a2")
    (author.root / "images/sub/c.txt").unlink()
    author.write("images/d.txt", "d2")
    author.quilt("add", "images", check=True)
    author.git("commit", "-qm", "v2")
    r = author.git("push", "-q", "origin", "main", "v1")
    assert "error" not in r.stderr.lower(), r.stderr
    return author


@pytest.fixture(scope="module")
def directory_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Published once per module with relative paths, so each test can work on a copy."""
    base = tmp_path_factory.mktemp("hooks-world")
    _publish(base, ["../quilt-remote"], "../origin.git")
    return base


@pytest.fixture
def world(tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> World:
    """A published world of its own: a copy of the template (directory), or new (S3)."""
    if kind == "directory":
        base = tmp_path / "w"
        shutil.copytree(request.getfixturevalue("directory_template"), base, symlinks=True)
        return World(Repo(base / "author", quilt_env()), base / "origin.git", base / "quilt-remote", base)
    url = request.getfixturevalue("moto_url")  # also puts fake credentials in the environment
    import boto3

    bucket = f"hooks-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    remote_args = [f"s3://{bucket}/data", "--endpoint-url", url, "--region", "us-east-1"]
    author = _publish(tmp_path, remote_args, str(tmp_path / "origin.git"))
    return World(author, tmp_path / "origin.git", tmp_path / "unused", tmp_path, kind, tuple(remote_args))


@both_kinds
def test_pre_push_uploaded_every_pushed_version(world: World) -> None:
    for rev in ("v1", "main"):
        top = top_of(world.author.git("show", f"{rev}:images.quilt").stdout)
        assert world.has_manifest(top)
    # a push with nothing new uploads nothing and says nothing
    r = world.author.git("push", "origin", "main")
    assert "gitquilt" not in r.stderr


@both_kinds
def test_tag_travel_in_a_fresh_clone(world: World) -> None:
    clone = world.clone("fresh")
    assert not (clone.root / "images").exists()
    clone.quilt("pull", check=True)
    assert files(clone.root / "images") == V2
    clone.git("-c", "advice.detachedHead=false", "checkout", "v1")  # hydrated by post-checkout, fetched on demand
    assert files(clone.root / "images") == V1
    clone.git("checkout", "main")
    assert files(clone.root / "images") == V2
    assert clone.quilt("status", "--check").returncode == 0


def test_push_from_a_clone_uploads_its_new_version(world: World) -> None:
    clone = world.clone("second")
    clone.quilt("pull", check=True)
    clone.write("images/e.txt", "e3")
    clone.quilt("add", "images", check=True)
    clone.git("commit", "-qm", "v3")
    clone.git("push", "-q", "origin", "main")
    top = top_of(clone.read("images.quilt").decode())
    assert world.has_manifest(top)
    world.author.git("pull", "-q", "origin", "main")  # post-merge hydrates (fast-forward)
    assert files(world.author.root / "images") == {**V2, "e.txt": b"e3"}


def _new_version(repo: Repo, name: str, data: bytes) -> str:
    repo.write(f"images/{name}", data)
    repo.quilt("add", "images", check=True)
    repo.git("commit", "-qm", f"add {name}")
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _stored(world: World, digest: str, data: bytes) -> bool:
    """The fragment is on the directory remote: loose, or inside a pack (small files travel in packs)."""
    if (world.store / "objects" / "sha256" / digest[:2] / digest[2:]).is_file():
        return True
    return any(data in p.read_bytes() for p in (world.store / "packs").glob("*.pack"))


def test_pre_push_upload_failure_pushes_no_ref(world: World) -> None:
    """§47: a fragment upload fails → the hook exits non-zero and git sends no ref."""
    before = world.remote_ref("refs/heads/main")
    data = b"this fragment cannot be stored"
    digest = _new_version(world.author, "blocked.bin", data)
    packs = world.store / "packs"  # small fragments go up in packs/: put a file where that directory is
    packs.rename(world.store / "packs.saved")
    packs.write_text("a file where the packs directory should be")
    r = world.author.git("push", "origin", "main", check=False)
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: pre-push")]
    assert len(errors) == 1 and "git pushed nothing" in errors[0], r.stderr
    assert world.remote_ref("refs/heads/main") == before
    packs.unlink()
    (world.store / "packs.saved").rename(packs)
    world.author.git("push", "-q", "origin", "main")  # fixed: the rerun completes
    assert world.remote_ref("refs/heads/main") != before
    assert _stored(world, digest, data)


def test_pre_push_lists_fragments_missing_from_the_cache(world: World) -> None:
    """§48: refuse, listing the missing keys."""
    before = world.remote_ref("refs/heads/main")
    digest = _new_version(world.author, "lost.bin", b"only ever in the cache")
    (world.author.root / ".git" / "quilt" / "objects" / "sha256" / digest[:2] / digest[2:]).unlink()
    r = world.author.git("push", "origin", "main", check=False)
    assert r.returncode != 0
    assert digest in r.stderr and "missing from the local cache" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error: pre-push")]) == 1
    assert world.remote_ref("refs/heads/main") == before


def test_new_branch_push_uploads_only_what_the_remote_lacks(world: World) -> None:
    world.author.git("fetch", "-q", "origin")  # remote-tracking refs for main
    world.author.git("checkout", "-qb", "feature")
    digest = _new_version(world.author, "f.txt", b"feature data")
    r = world.author.git("push", "-u", "origin", "feature")
    assert "1 fragment(s) and 1 manifest(s) uploaded" in r.stdout + r.stderr, r.stdout + r.stderr
    assert _stored(world, digest, b"feature data")


def test_post_checkout_with_the_network_down(world: World) -> None:
    """§50: one line saying what to run, non-zero exit, no half-hydrated file."""
    clone = world.clone("offline")
    clone.quilt("pull", check=True)
    hidden = world.store.with_name("quilt-remote-away")
    world.store.rename(hidden)
    try:
        r = clone.git("-c", "advice.detachedHead=false", "checkout", "v1", check=False)
        assert r.returncode != 0
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "run: git quilt pull images" in errors[0], r.stderr
        assert "Traceback" not in r.stderr
        assert files(clone.root / "images") == V2  # untouched: nothing written before the data was there
        assert not [p for p in (clone.root / "images").rglob("*") if ".tmp" in p.name]
    finally:
        hidden.rename(world.store)
    clone.quilt("pull", "images", check=True)
    assert files(clone.root / "images") == V1


def test_autofetch_off_in_hooks_hydrates_only_from_the_cache(world: World) -> None:
    clone = world.clone("nofetch")
    clone.quilt("pull", check=True)
    clone.git("config", "quilt.hooks.autofetch", "false")
    r = clone.git("-c", "advice.detachedHead=false", "checkout", "v1", check=False)
    assert r.returncode != 0 and "run: git quilt pull images" in r.stderr
    v1_top = top_of(clone.git("show", "v1:images.quilt").stdout)
    assert not (clone.root / ".git" / "quilt" / "manifests" / f"{v1_top}.parquet").exists()  # nothing fetched
    assert files(clone.root / "images") == V2


def test_merge_driver_fetches_manifests_it_lacks(world: World) -> None:
    other = world.clone("other")
    other.quilt("pull", check=True)
    other.git("checkout", "-qb", "theirs")
    other.write("images/b.txt", "b-theirs")
    other.quilt("add", "images", check=True)
    other.git("commit", "-qm", "theirs edits b")
    other.git("push", "-q", "origin", "theirs")

    mine = world.clone("mine")
    mine.quilt("pull", check=True)
    mine.git("add", ".gitattributes")
    mine.write("images/a.txt", "a-mine")
    mine.quilt("add", "images", check=True)
    mine.git("commit", "-qm", "mine edits a")
    mine.git("fetch", "-q", "origin")
    r = mine.git("merge", "--no-edit", "origin/theirs", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert files(mine.root / "images") == {**V2, "a.txt": b"a-mine", "b.txt": b"b-theirs"}
    mine.git("push", "-q", "origin", "main")  # the merged manifest travels with the merge commit
    top = top_of(mine.read("images.quilt").decode())
    assert world.has_manifest(top)


# -- CI: retrain from a tag ------------------------------------------------------------------
def _publish_model(world: World, tamper: bool = False) -> str:
    """Add a job script and the model it produces; tag and push. Returns the tag."""
    a = world.author
    a.quilt("remote", "add", "origin", str(world.store), "--default", "--replace", check=True)
    shutil.copy(ROOT / "examples" / "ci" / "train_stub.py", a.root / "train.py")
    run(["python3", "train.py", "images", "models/stub"], a.root, a.env, check=True)
    if tamper:
        (a.root / "models/stub/weights.bin").write_bytes(b"edited by hand")
    a.quilt("add", "models/stub", "-m", "stub model", "--meta", '{"epochs": 1}', check=True)
    a.git("add", "train.py")
    a.git("commit", "-qm", "model")
    tag = "model-bad" if tamper else "model-v1"
    a.git("tag", tag)
    a.git("push", "-q", "origin", "main", tag)
    return tag


def _retrain(world: World, tag: str) -> object:
    env = quilt_env({"TMPDIR": str(world.tmp)})
    script = ROOT / "examples" / "ci" / "retrain_from_tag.sh"
    return run(["bash", str(script), str(world.origin), tag, "models/stub", "python3", "train.py", "images",
                "models/stub"], world.tmp, env, timeout=300)


def test_ci_retrain_script_reproduces_the_tagged_model(world: World) -> None:
    tag = _publish_model(world)
    pinned = top_of(world.author.read("models/stub.quilt").decode())
    r = _retrain(world, tag)
    assert r.returncode == 0, r.stdout + r.stderr  # type: ignore[attr-defined]
    assert f"reproduced models/stub at {tag}: top hash {pinned}" in r.stdout  # type: ignore[attr-defined]
    assert not list(world.tmp.glob("retrain.*"))  # the work directory is cleaned up


def test_ci_retrain_script_reports_a_mismatch(world: World) -> None:
    tag = _publish_model(world, tamper=True)
    r = _retrain(world, tag)
    assert r.returncode == 1, r.stdout + r.stderr  # type: ignore[attr-defined]
    assert "MISMATCH" in r.stderr and "models/stub/weights.bin: differs" in r.stderr  # type: ignore[attr-defined]



@pytest.mark.parametrize("kind", ["s3"])
def test_s3_endpoint_down_fails_hooks_closed(world: World) -> None:
    """§47/§50 on S3: a dead endpoint blocks the push and leaves the checked-out files alone."""
    clone = world.clone("offline-s3")
    clone.quilt("pull", check=True)
    cfg = clone.root / ".gitquilt.toml"
    text = cfg.read_text().replace(world.remote_args[2], "http://127.0.0.1:9")  # nothing listens on port 9
    cfg.write_text(text.replace('region = "us-east-1"', 'region = "us-east-1"\nmax_attempts = 1'))
    r = clone.git("-c", "advice.detachedHead=false", "checkout", "v1", check=False)
    assert r.returncode != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "run: git quilt pull images" in errors[0], r.stderr
    assert files(clone.root / "images") == V2
    clone.git("checkout", "-q", "main")
    before = world.remote_ref("refs/heads/main")
    _new_version(clone, "new.bin", b"cannot leave this machine")
    r = clone.git("push", "origin", "main", check=False)
    assert r.returncode != 0 and "error: pre-push: uploading the data of images failed" in r.stderr, r.stderr
    assert world.remote_ref("refs/heads/main") == before
