"""gitquilt: version data sets and models with git.

Importing this package is cheap: it loads none of pyarrow, boto3, pygit2 or torch.
"""

from __future__ import annotations

from gitquilt.errors import QuiltError

__version__ = "0.1.0"
__all__ = ["QuiltError", "__version__"]
