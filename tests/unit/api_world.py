"""A small published repository for the API tests: two versions of an image package on a directory remote.

Built once per test module (driving the real ``git quilt``); tests that need an empty
cache take a fresh ``git clone`` of it, whose cache (``.git/quilt``) starts empty.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Repo, quilt_env, run


def tiny_png(seed: int, size: tuple[int, int] = (6, 5), fmt: str = "PNG") -> bytes:
    """A small deterministic image (random pixels from ``seed``)."""
    from PIL import Image

    rnd = random.Random(seed)
    im = Image.new("RGB", size)
    im.putdata([(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)) for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    im.save(out, fmt)
    return out.getvalue()


#: version 1 of images/ (key → bytes)
V1: dict[str, bytes] = {
    "README.md": b"version 1\n",
    "test/101085.jpg": tiny_png(1, fmt="JPEG"),
    "test/101087.jpg": tiny_png(2, fmt="JPEG"),
    "test/photo.jpg": tiny_png(3, fmt="JPEG"),
    "test/photo.png": tiny_png(4),
    "class/keys.txt": b"a file under a keyword directory, named like a method\n",
    "train/labels.csv": b"name,label\n",
    **{f"train/img_{i:03d}.png": tiny_png(100 + i, size=(4 + i % 3, 4)) for i in range(12)},
}
#: version 2 (the work tree and main): README changed, one image added
V2: dict[str, bytes] = {**V1, "README.md": b"version 2\n", "test/new.jpg": tiny_png(5, fmt="JPEG")}


@dataclass
class World:
    src: Repo
    remote: Path
    base: Path

    def clone(self, name: str, env: dict[str, str] | None = None) -> Repo:
        """A fresh clone: the pointers and .gitquilt.toml, an empty cache, no package data."""
        dest = self.base / name
        run(["git", "clone", "-q", str(self.src.root), str(dest)], self.base, quilt_env(env), check=True)
        return Repo(dest, quilt_env(env))


def write_version(repo: Repo, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        repo.write(f"images/{key}", data)


def build_world(base: Path, remote_args: list[str] | None = None, env: dict[str, str] | None = None) -> World:
    """``images`` v1 (tag v1) and v2 (main), pushed to a remote (default: a directory; else
    ``git quilt remote add origin *remote_args``)."""
    src = Repo(base / "src", quilt_env(env))
    src.root.mkdir(parents=True)
    src.git("init", "-q", "-b", "main")
    src.quilt("init", check=True)
    write_version(src, V1)
    src.quilt("add", "images", "-m", "first", check=True)
    src.git("commit", "-qm", "images v1")
    src.git("tag", "v1")
    write_version(src, V2)
    src.quilt("add", "images", "-m", "second", check=True)
    remote = base / "remote"
    args = remote_args or [str(remote)]
    src.quilt("remote", "add", "origin", *args, check=True)
    src.git("add", "-A")
    src.git("commit", "-qm", "images v2, remote")
    src.quilt("push", "--all", check=True)
    return World(src, remote, base)
