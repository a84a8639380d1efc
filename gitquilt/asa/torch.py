"""The torch adapter: a directory node as a ``torch.utils.data.Dataset`` (extra ``gitquilt[torch]``).

::

    ds = pkg.train(asa=gitquilt.asa.torch.dataset(
        include="*.jpg", node_parser=open_image,
        input_transform=low_res, target_transform=high_res))
    loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=4)

Item ``i`` is ``(input_transform(x), target_transform(x))`` with ``x =
node_parser(path)`` of the ``i``-th selected file in key order (a missing transform
leaves ``x`` as it is; ``pairs=False`` gives ``input_transform(x)`` alone). The pair
of one parsed file suits super-resolution (low-resolution input, full-resolution
target), as in Quilt's original adapter.

Fragments are fetched lazily, one per item, in whichever process reads the item, so a
DataLoader streams a package without a checkout. Each process opens its own workspace
and remote client (none is shared across fork or spawn; RELIABILITY.md §35). Under
spawn, ``node_parser`` and the transforms must pickle: module-level functions, not
lambdas. This is the only module of gitquilt that imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import torch
    import torch.utils.data
except ImportError as exc:  # pragma: no cover - exercised only where torch is absent
    raise ImportError(f"gitquilt.asa.torch needs PyTorch: pip install 'gitquilt[torch]' ({exc})") from exc

from gitquilt.asa import Include, select
from gitquilt.asa.img import open_image

__all__ = ["NodeDataset", "dataset"]

Parser = Callable[[str], Any]
Transform = Callable[[Any], Any]


class NodeDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The files a directory node selected, parsed and transformed item by item."""

    def __init__(self, files: list[tuple[str, Any]], node_parser: Parser | None = None,
                 input_transform: Transform | None = None, target_transform: Transform | None = None,
                 pairs: bool = True, directory: Any = None) -> None:
        self._directory = directory  # the directory node, for a batched fetch()
        self.keys = [rel for rel, _ in files]  #: keys relative to the directory, item order
        self._files = [f for _, f in files]
        self.node_parser: Parser = node_parser or open_image
        self.input_transform = input_transform
        self.target_transform = target_transform
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self._files)

    def node(self, index: int) -> Any:
        """The file node of item ``index``."""
        return self._files[index]

    def __getitem__(self, index: int) -> Any:
        if not -len(self._files) <= index < len(self._files):
            raise IndexError(f"index {index} out of range for a dataset of {len(self._files)} items")
        x = self.node_parser(self._files[index]())  # fetched on demand in this process
        item = self.input_transform(x) if self.input_transform is not None else x
        if not self.pairs:
            return item
        target = self.target_transform(x) if self.target_transform is not None else x
        return item, target

    def fetch(self) -> int:
        """Fetch every item's fragment now, in one batch where it can (items fetch themselves anyway)."""
        if self._directory is not None:
            return int(self._directory.fetch(self._files))
        return sum(int(f.fetch()) for f in self._files)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_directory"] = None  # holds the whole manifest: workers need only their files
        return state

    def __repr__(self) -> str:
        return f"<gitquilt.asa.torch.NodeDataset {len(self)} items>"


class _DatasetAdapter:
    """The adapter :func:`dataset` returns (a class, so that it pickles)."""

    def __init__(self, include: Include, node_parser: Parser | None, input_transform: Transform | None,
                 target_transform: Transform | None, pairs: bool) -> None:
        self.include = include
        self.node_parser = node_parser
        self.input_transform = input_transform
        self.target_transform = target_transform
        self.pairs = pairs

    def __call__(self, node: Any) -> NodeDataset:
        if not hasattr(node, "walk"):
            return NodeDataset([(node.name, node)], self.node_parser, self.input_transform,
                               self.target_transform, self.pairs)
        return NodeDataset(select(node, self.include), self.node_parser, self.input_transform,
                           self.target_transform, self.pairs, directory=node)


def dataset(include: Include = None, node_parser: Parser | None = None, input_transform: Transform | None = None,
            target_transform: Transform | None = None, pairs: bool = True) -> _DatasetAdapter:
    """An adapter turning a directory node into a :class:`NodeDataset`.

    ``include``: a glob (``"*.jpg"``), several globs, or a predicate over file nodes
    (see :func:`gitquilt.asa.select`); default every file. ``node_parser(path)`` parses
    a file (default: :func:`gitquilt.asa.img.open_image`, a PIL image in RGB).
    """
    return _DatasetAdapter(include, node_parser, input_transform, target_transform, pairs)
