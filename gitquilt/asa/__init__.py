"""Adapters: ``node(asa=adapter)`` turns a package node into something else.

An adapter is any callable that takes a node (a :class:`gitquilt.api.Directory` or
:class:`gitquilt.api.File`) and returns a value; the ones here are made by factories:

* :mod:`gitquilt.asa.img` — ``img.plot(figsize=(20, 20))`` (a matplotlib figure, or a
  contact-sheet ``PIL.Image`` when matplotlib is not installed), ``img.image()``;
* :mod:`gitquilt.asa.torch` — ``torch.dataset(include=..., node_parser=...,
  input_transform=..., target_transform=...)``, a ``torch.utils.data.Dataset``
  (needs the extra ``gitquilt[torch]``).

Submodules load on first use, so ``import gitquilt.asa`` imports neither Pillow nor
torch. Adapters see nodes only through the small protocols below (the api layer sits
above this one and is never imported from here).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, Protocol

__all__ = ["DirectoryNode", "FileNode", "Include", "img", "select", "torch"]

_SUBMODULES = ("img", "torch")


class FileNode(Protocol):
    """What an adapter may use of a file node."""

    key: str
    sha256: str
    size: int

    @property
    def name(self) -> str: ...

    def __call__(self) -> str: ...


class DirectoryNode(Protocol):
    """What an adapter may use of a directory node."""

    @property
    def key(self) -> str: ...

    def walk(self) -> Iterator[tuple[str, Any]]: ...

    def fetch(self, files: Any = None) -> int: ...


#: ``include=``: a glob, several globs, or a predicate over file nodes.
Include = str | Sequence[str] | Callable[[Any], bool] | None


def select(node: DirectoryNode, include: Include = None) -> list[tuple[str, Any]]:
    """The files below ``node`` that ``include`` selects, as (relative key, file node), in key order.

    A glob is matched against the key relative to the directory (``*`` crosses ``/``);
    a glob without ``/`` is also matched against the file name. A callable receives the
    file node (``.key``, ``.name``, ``.size``, ``.meta``) and returns True to keep it.
    """
    if include is None:
        return list(node.walk())
    if callable(include):
        keep = include
        return [(rel, f) for rel, f in node.walk() if keep(f)]
    patterns = [include] if isinstance(include, str) else list(include)

    def match(rel: str) -> bool:
        name = rel.rpartition("/")[2]
        return any(fnmatch.fnmatchcase(rel, p) or ("/" not in p and fnmatch.fnmatchcase(name, p)) for p in patterns)

    return [(rel, f) for rel, f in node.walk() if match(rel)]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"gitquilt.asa.{name}")
    raise AttributeError(f"module 'gitquilt.asa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
