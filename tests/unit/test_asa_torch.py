"""gitquilt.asa.torch: a Dataset over a directory node, streamed by DataLoader workers.

RELIABILITY.md §35: DataLoader workers under fork and spawn fetch on demand, each with
its own workspace and remote client, and two epochs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import gitquilt
from gitquilt.asa.torch import NodeDataset, dataset
from tests.remotes.conftest import aws_env, bucket, moto_url, s3_admin  # noqa: F401 - fixtures
from tests.unit.api_world import V2, World, build_world

# torch warns when num_workers exceeds the CPU count (CI has two cores); fork with threads warns on 3.12+
WORKER_WARNINGS = [
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]
TRAIN = sorted(k for k in V2 if k.startswith("train/img_"))


# module-level, so that spawned workers can unpickle them
def crop(im: Image.Image) -> Image.Image:
    return im.crop((0, 0, 4, 4))


def to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def low_res(im: Image.Image) -> torch.Tensor:
    return to_tensor(crop(im).resize((2, 2), Image.Resampling.BICUBIC))


def high_res(im: Image.Image) -> torch.Tensor:
    return to_tensor(crop(im))


def digest_and_pid(path: str) -> tuple[str, int]:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest(), os.getpid()


def digest_pid_own_client(path: str) -> tuple[str, int, bool]:
    """Also: whether this process holds a boto3 client it created (the S3 remote keys them by pid)."""
    from gitquilt.remotes import s3

    digest, pid = digest_and_pid(path)
    return digest, pid, any(key[0] == pid for key in s3._CLIENTS)


def _superres(node: Any) -> NodeDataset:
    ds: NodeDataset = node(asa=dataset(include="img_*.png", input_transform=low_res, target_transform=high_res))
    return ds


def _expected() -> bytes:
    """The bytes two epochs must produce, computed from the source files directly."""
    out = []
    for key in TRAIN:
        im = Image.open(io.BytesIO(V2[key])).convert("RGB")
        out.append(low_res(im).numpy().tobytes() + high_res(im).numpy().tobytes())
    return b"".join(out)


def _epoch(loader: DataLoader[Any]) -> bytes:
    parts = []
    for lo, hi in loader:
        for i in range(lo.shape[0]):
            parts.append(lo[i].numpy().tobytes() + hi[i].numpy().tobytes())
    return b"".join(parts)


def _objects(root: Path) -> list[str]:
    return sorted(p.parent.name + p.name for p in (root / ".git" / "quilt" / "objects").rglob("*") if p.is_file())


def _train_digests() -> list[str]:
    return sorted(hashlib.sha256(V2[k]).hexdigest() for k in TRAIN)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("torch"))


# -- the dataset -------------------------------------------------------------------------------
def test_dataset_length_items_and_defaults(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    ds = _superres(pkg.train)
    assert isinstance(ds, torch.utils.data.Dataset) and len(ds) == 12
    assert ds.keys == [k[len("train/"):] for k in TRAIN]  # labels.csv is not an image_*.png
    lo, hi = ds[3]
    assert lo.shape == (3, 2, 2) and hi.shape == (3, 4, 4) and hi.dtype == torch.uint8
    assert ds[-1][1].numpy().tobytes() == high_res(Image.open(io.BytesIO(V2[TRAIN[-1]])).convert("RGB")).numpy().tobytes()
    with pytest.raises(IndexError):
        ds[12]
    plain = pkg.train(asa=dataset(include=lambda f: f.name.endswith(".png")))
    x, y = plain[0]
    assert isinstance(x, Image.Image) and x.mode == "RGB" and x is y  # default parser, no transforms
    single = pkg.train(asa=dataset(include="labels.csv", node_parser=digest_and_pid, pairs=False))
    assert len(single) == 1 and single[0][0] == hashlib.sha256(V2["train/labels.csv"]).hexdigest()
    assert ds.node(0).key == TRAIN[0]


def test_dataset_pickles_without_the_manifest(world: World) -> None:
    ds = _superres(gitquilt.load("images", repo=world.src.root).train)
    assert ds.fetch() == 0  # everything is in the source repository's cache already
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._directory is None and len(copy) == 12
    assert copy[5][1].numpy().tobytes() == ds[5][1].numpy().tobytes()


# -- DataLoader workers ------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "workers"), [("fork", 4), ("spawn", 2)])
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_workers_fetch_on_demand_and_two_epochs_match(world: World, method: str, workers: int) -> None:
    clone = world.clone(f"loader-{method}")
    pkg = gitquilt.load("images", repo=clone.root)
    ds = _superres(pkg.train)
    ds[0]  # the parent opens its workspace and remote first: workers must not reuse them
    assert _objects(clone.root) == [hashlib.sha256(V2[TRAIN[0]]).hexdigest()]
    loader = DataLoader(ds, batch_size=3, num_workers=workers, multiprocessing_context=method,
                        persistent_workers=method == "spawn")
    first, second = _epoch(loader), _epoch(loader)
    assert first == second == _expected()
    assert _objects(clone.root) == _train_digests()  # streamed: the train images only, no checkout
    assert not (clone.root / "images").exists()


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_items_are_read_in_the_worker_processes(world: World) -> None:
    clone = world.clone("loader-pids")
    ds = gitquilt.load("images", repo=clone.root).train(
        asa=dataset(include="*.png", node_parser=digest_and_pid, pairs=False))
    loader = DataLoader(ds, batch_size=None, num_workers=3, multiprocessing_context="fork")
    seen = list(loader)
    assert sorted(d for d, _ in seen) == _train_digests()
    pids = {pid for _, pid in seen}
    assert os.getpid() not in pids and len(pids) == 3


@pytest.fixture
def s3_world(tmp_path: Path, moto_url: str, bucket: str) -> Iterator[World]:  # noqa: F811
    yield build_world(tmp_path, ["s3://" + bucket + "/q", "--endpoint-url", moto_url, "--region", "us-east-1"])


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_workers_stream_from_s3_with_their_own_clients(s3_world: World) -> None:
    """RELIABILITY.md §35 over a real HTTP endpoint (moto): a boto3 client per process."""
    clone = s3_world.clone("s3-loader")
    pkg = gitquilt.load("images", repo=clone.root)
    ds = _superres(pkg.train)
    ds[0]  # the parent's boto3 client now exists, with open connections
    parent_client = pkg._state.ctx.backend("x", [])._client  # type: ignore[attr-defined]
    checked = pkg.train(asa=dataset(include="img_*.png", node_parser=digest_pid_own_client, pairs=False))
    seen = list(DataLoader(checked, batch_size=None, num_workers=4, multiprocessing_context="fork"))
    assert sorted(d for d, _, _ in seen) == _train_digests()
    assert os.getpid() not in {pid for _, pid, _ in seen}
    # each worker fetched through a client it made itself (item 0 was cached by the parent)
    assert [own for _, _, own in seen] == [False] + [True] * 11
    assert _objects(clone.root) == _train_digests()
    loader = DataLoader(ds, batch_size=2, num_workers=4, multiprocessing_context="fork")
    assert _epoch(loader) == _epoch(loader) == _expected()
    assert pkg._state.ctx.backend("x", [])._client is parent_client  # type: ignore[attr-defined]
