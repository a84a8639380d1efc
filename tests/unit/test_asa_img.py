"""gitquilt.asa.img: contact sheets (no matplotlib), the matplotlib path, image loading."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import gitquilt
from gitquilt.asa import select
from gitquilt.asa.img import contact_sheet, image, open_image, plot
from gitquilt.errors import UsageError
from tests.unit.api_world import V2, World, build_world, tiny_png


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("img"))


def _objects(root: Path) -> int:
    return sum(1 for p in (root / ".git" / "quilt" / "objects").rglob("*") if p.is_file())


def test_plot_without_matplotlib_returns_a_contact_sheet(world: World) -> None:
    assert "matplotlib" not in sys.modules  # not a dependency: the Pillow path is the one users get here
    pkg = gitquilt.load("images", repo=world.src.root)
    sheet = pkg.test(asa=gitquilt.asa.img.plot(figsize=(2, 1), dpi=100))
    assert isinstance(sheet, Image.Image) and sheet.size == (200, 100) and sheet.mode == "RGB"
    # five images in a 3 × 2 grid; each cell holds a picture (not only white background)
    cells = [(x * 66, y * 50, x * 66 + 66, y * 50 + 50) for y in range(2) for x in range(3)]
    painted = [len(sheet.crop(c).getcolors(1 << 16) or ()) > 2 for c in cells]
    assert painted == [True] * 5 + [False]


def test_contact_sheet_is_deterministic_and_labels_tiles() -> None:
    ims = [(f"img_{i}.png", Image.open(__import__("io").BytesIO(tiny_png(i)))) for i in range(4)]
    a = contact_sheet(ims, (120, 120), cols=2)
    b = contact_sheet(ims, (120, 120), cols=2)
    assert a.tobytes() == b.tobytes()
    unlabelled = contact_sheet(ims, (120, 120), cols=2, titles=False)
    assert unlabelled.tobytes() != a.tobytes()  # the labels drew something


def test_plot_fetches_only_the_selected_images_in_one_go(world: World) -> None:
    clone = world.clone("plot")
    pkg = gitquilt.load("images", repo=clone.root)
    sheet = pkg.train(asa=plot(figsize=(1, 1), include="img_00[0-3].png"))
    assert isinstance(sheet, Image.Image)
    assert _objects(clone.root) == 4  # the four selected images, not the whole directory


def test_plot_default_selection_skips_non_images_and_refuses_none(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    chosen = [rel for rel, _ in select(pkg.train, lambda f: f.name.endswith(".png"))]
    assert len(chosen) == 12
    with pytest.raises(UsageError, match="no images under class/"):
        pkg.class_(asa=plot())
    with pytest.raises(UsageError, match="backend must be"):
        plot(backend="svg")


def test_plot_uses_matplotlib_when_it_is_installed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in pyplot records what the adapter draws (matplotlib is not installed here)."""
    drawn: list[tuple[str, Any]] = []

    class Ax:
        def axis(self, _v: str) -> None:
            pass

        def imshow(self, arr: Any) -> None:
            drawn.append(("imshow", arr.shape))

        def set_title(self, title: str, fontsize: int) -> None:
            drawn.append(("title", title))

    class Axes:
        def __init__(self, n: int) -> None:
            self.flat = [Ax() for _ in range(n)]

    class Fig:
        def tight_layout(self) -> None:
            drawn.append(("layout", None))

    def subplots(rows: int, cols: int, figsize: tuple[float, float], squeeze: bool) -> tuple[Fig, Axes]:
        drawn.append(("grid", (rows, cols, figsize)))
        return Fig(), Axes(rows * cols)

    mpl = types.ModuleType("matplotlib")
    pyplot = types.ModuleType("matplotlib.pyplot")
    pyplot.subplots = subplots  # type: ignore[attr-defined]
    mpl.pyplot = pyplot  # type: ignore[attr-defined]
    mpl.__spec__ = __import__("importlib.machinery").machinery.ModuleSpec("matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib", mpl)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
    pkg = gitquilt.load("images", repo=world.src.root)
    fig = pkg.test(asa=plot(figsize=(20, 20)))
    assert isinstance(fig, Fig)
    assert drawn[0] == ("grid", (2, 3, (20, 20)))
    assert [v for k, v in drawn if k == "title"] == ["101085.jpg", "101087.jpg", "new.jpg", "photo.jpg", "photo.png"]
    assert [v for k, v in drawn if k == "imshow"] == [(5, 6, 3)] * 5


def test_image_adapter_on_files_and_directories(world: World) -> None:
    pkg = gitquilt.load("images", repo=world.src.root)
    im = pkg.test.photo_png(asa=image())
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == (6, 5)
    assert im.tobytes() == Image.open(__import__("io").BytesIO(V2["test/photo.png"])).convert("RGB").tobytes()
    grey = pkg.test.photo_png(asa=image(mode="L"))
    assert grey.mode == "L"
    images = pkg.train(asa=image(include="*.png"))
    assert sorted(images) == [f"img_{i:03d}.png" for i in range(12)]


def test_open_image_closes_the_file(tmp_path: Path) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(tiny_png(7))
    im = open_image(str(p))
    p.unlink()  # decoded completely: nothing still reads the file
    assert im.size == (6, 5) and im.mode == "RGB"
