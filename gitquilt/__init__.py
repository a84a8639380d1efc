"""gitquilt: version data sets and models with git.

Importing this package is cheap: it loads none of pyarrow, boto3, pygit2 or torch.
The public API (``load``, ``export``, ``Package``, ``asa``) is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from gitquilt.errors import QuiltError

__version__ = "0.1.0"
__all__ = ["Package", "QuiltError", "__version__", "asa", "export", "load"]

#: name → (module, attribute or None for the module itself)
_LAZY = {
    "load": ("gitquilt.api", "load"),
    "export": ("gitquilt.api", "export"),
    "Package": ("gitquilt.api", "Package"),
    "asa": ("gitquilt.asa", None),
}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module 'gitquilt' has no attribute {name!r}")
    module = importlib.import_module(found[0])
    value = module if found[1] is None else getattr(module, found[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
