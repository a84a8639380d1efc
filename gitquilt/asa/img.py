"""Image adapters (Pillow, imported on first use).

* ``node(asa=img.plot(figsize=(20, 20)))`` draws the images below a directory node in
  a grid: a matplotlib ``Figure`` when matplotlib is installed (it is not a dependency
  of gitquilt), otherwise a contact sheet returned as a ``PIL.Image.Image`` (notebooks
  display it; ``.save("sheet.png")`` writes it).
* ``node(asa=img.image())`` opens a file node as a ``PIL.Image.Image`` (on a directory
  node: a dict of relative key → image).
* :func:`open_image` is the default ``node_parser`` of the torch adapter.
"""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING, Any

from gitquilt.asa import Include, select
from gitquilt.errors import UsageError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["contact_sheet", "image", "open_image", "plot"]

#: Label strip under each tile of a contact sheet (pixels).
LABEL_HEIGHT = 12
PAD = 2


def open_image(path: str, mode: str | None = "RGB") -> Image:
    """Decode the image at ``path`` completely (the file is closed on return), converted to ``mode``."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert(mode) if mode and im.mode != mode else im.copy()


def _is_image_name(name: str) -> bool:
    from PIL import Image

    ext = name.rpartition(".")[2].lower()
    return "." in name and f".{ext}" in Image.registered_extensions()


def _chosen(node: Any, include: Include, limit: int | None) -> list[tuple[str, Any]]:
    """(relative key, file node) of the images to show; a file node stands for itself."""
    if not hasattr(node, "walk"):
        return [(node.name, node)]
    files = select(node, include) if include is not None else [(r, f) for r, f in node.walk() if _is_image_name(r)]
    if not files:
        raise UsageError(f"no images under {node.key or 'the package root'}/ to plot (include={include!r})")
    return files[:limit] if limit is not None else files


class _Plot:
    """The adapter :func:`plot` returns (a class, so that it pickles)."""

    def __init__(self, figsize: tuple[float, float], dpi: int, include: Include, limit: int | None,
                 cols: int | None, titles: bool, backend: str | None) -> None:
        if backend not in (None, "pil", "matplotlib"):
            raise UsageError(f"plot backend must be 'pil' or 'matplotlib', not {backend!r}")
        self.figsize, self.dpi, self.include, self.limit = figsize, dpi, include, limit
        self.cols, self.titles, self.backend = cols, titles, backend

    def __call__(self, node: Any) -> Any:
        chosen = _chosen(node, self.include, self.limit)
        if hasattr(node, "fetch") and hasattr(node, "walk"):
            node.fetch([f for _, f in chosen])  # one batched fetch instead of one per image
        images = [(rel, open_image(f())) for rel, f in chosen]
        backend = self.backend or ("matplotlib" if importlib.util.find_spec("matplotlib") else "pil")
        if backend == "matplotlib":
            return _figure(images, self.figsize, self.cols, self.titles)
        size = (max(1, round(self.figsize[0] * self.dpi)), max(1, round(self.figsize[1] * self.dpi)))
        return contact_sheet(images, size, self.cols, self.titles)


def plot(figsize: tuple[float, float] = (10, 10), dpi: int = 100, include: Include = None, limit: int | None = 100,
         cols: int | None = None, titles: bool = True, backend: str | None = None) -> _Plot:
    """An adapter that shows the images below a directory node in a grid.

    ``figsize`` is in inches (``dpi`` pixels each for a contact sheet); ``include`` picks
    files (a glob or predicate, see :func:`gitquilt.asa.select`; default: every file
    with an image extension Pillow knows); at most ``limit`` images, in key order;
    ``backend`` forces ``"pil"`` or ``"matplotlib"``.
    """
    return _Plot(figsize, dpi, include, limit, cols, titles, backend)


def _grid(n: int, cols: int | None) -> tuple[int, int]:
    c = max(1, min(cols or math.ceil(math.sqrt(n)), n))
    return c, math.ceil(n / c)


def contact_sheet(images: list[tuple[str, Image]], size: tuple[int, int], cols: int | None = None,
                  titles: bool = True) -> Image:
    """One RGB image of ``size`` pixels with every image scaled into its cell, labelled with its name."""
    from PIL import Image, ImageDraw, ImageOps

    width, height = size
    c, r = _grid(len(images), cols)
    cw, ch = width // c, height // r
    label = LABEL_HEIGHT if titles and ch > 3 * LABEL_HEIGHT else 0
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (name, im) in enumerate(images):
        x, y = (n % c) * cw, (n // c) * ch
        box = (max(1, cw - 2 * PAD), max(1, ch - 2 * PAD - label))
        tile = ImageOps.contain(im.convert("RGB"), box)
        sheet.paste(tile, (x + (cw - tile.width) // 2, y + PAD + (box[1] - tile.height) // 2))
        if label:
            text = name if len(name) <= cw // 6 else "…" + name[-max(1, cw // 6 - 1):]
            draw.text((x + PAD, y + ch - label), text, fill="black")
    return sheet


def _figure(images: list[tuple[str, Image]], figsize: tuple[float, float], cols: int | None, titles: bool) -> Any:
    import matplotlib.pyplot as plt
    import numpy as np

    c, r = _grid(len(images), cols)
    fig, axes = plt.subplots(r, c, figsize=figsize, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, im) in zip(axes.flat, images):
        ax.imshow(np.asarray(im))
        if titles:
            ax.set_title(name, fontsize=8)
    fig.tight_layout()
    return fig


class _Image:
    def __init__(self, mode: str | None, include: Include) -> None:
        self.mode, self.include = mode, include

    def __call__(self, node: Any) -> Any:
        if not hasattr(node, "walk"):
            return open_image(node(), self.mode)
        files = select(node, self.include)
        node.fetch([f for _, f in files])
        return {rel: open_image(f(), self.mode) for rel, f in files}


def image(mode: str | None = "RGB", include: Include = None) -> _Image:
    """An adapter: a file node → ``PIL.Image.Image`` (a directory node → {relative key: image})."""
    return _Image(mode, include)
