"""Exception tree and the exit codes each kind of failure maps to.

Every error a user can cause derives from :class:`QuiltError`; the CLI prints its
message as one line on stderr and exits with :attr:`QuiltError.exit_code`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class QuiltError(Exception):
    """Base class: a failure with a one-line, user-facing message."""

    exit_code: int = EXIT_FAILED


class UsageError(QuiltError):
    """Bad arguments or an impossible request (exit 2)."""

    exit_code = EXIT_USAGE


class CheckFailed(QuiltError):
    """A check found differences or damage (exit 1)."""


class FormatError(QuiltError):
    """A pointer, manifest or config file is malformed."""


class UnsupportedFormat(FormatError):
    """A file uses a format version newer than this gitquilt understands."""


class UnsafePath(QuiltError):
    """A logical key or path could escape the package directory or touch git internals."""


class IntegrityError(QuiltError):
    """Bytes do not hash to the digest they are stored or announced under."""


class NotFound(QuiltError):
    """A package, manifest, fragment, revision or remote does not exist."""


class AmbiguousPrefix(UsageError):
    """A short top-hash prefix matches several manifests."""


class MissingFragments(QuiltError):
    """Fragments a package needs are not in the cache."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class DirtyWorkTree(CheckFailed):
    """Refused to overwrite or delete files that differ from the pinned manifest."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class LockError(QuiltError):
    """A lock is held by another live process."""


class ConfigError(QuiltError):
    """`.gitquilt.toml` or git config holds an invalid or unsafe value."""


class RemoteError(QuiltError):
    """A remote operation failed."""


class RemoteTransient(RemoteError):
    """A failure worth retrying (throttling, 5xx, dropped connection)."""


class RemotePermanent(RemoteError):
    """A failure that retrying cannot fix (no such bucket, access denied)."""


class StoreFullError(QuiltError):
    """Not enough free space for the operation; nothing was written."""
