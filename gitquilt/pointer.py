"""Pointer files: the small TOML file git tracks beside each package directory."""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from gitquilt.digest import is_digest
from gitquilt.errors import FormatError, UnsafePath, UnsupportedFormat
from gitquilt.keys import check_key

FORMAT_VERSION = 1
SUFFIX = ".quilt"
#: Largest pointer accepted; real ones are about 250 bytes.
MAX_POINTER_BYTES = 4096
FIELDS = ("format", "path", "top_hash", "files", "bytes")


@dataclass(frozen=True)
class Pointer:
    """What a pointer file says: which manifest the package directory ``path`` must match."""

    path: str
    top_hash: str
    files: int
    bytes: int

    def to_bytes(self) -> bytes:
        """Deterministic pointer text: same package, byte-identical file."""
        return (
            f"# gitquilt package pointer. `git quilt checkout` hydrates {self.path}/ from it.\n"
            f"format = {FORMAT_VERSION}\n"
            f"path = {_toml_string(self.path)}\n"
            f'top_hash = "{self.top_hash}"\n'
            f"files = {self.files}\n"
            f"bytes = {self.bytes}\n"
        ).encode("utf-8")


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def package_name_for(pointer_file: str) -> str:
    """``images.quilt`` → ``images``."""
    name = Path(pointer_file).name
    if not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
        raise FormatError(f"{pointer_file}: a pointer file name must end in {SUFFIX}")
    return name[: -len(SUFFIX)]


def parse_pointer(data: bytes, where: str, file_name: str | None = None, check_location: bool = True) -> Pointer:
    """Parse and check pointer bytes; ``where`` names the file in errors.

    ``path`` is the package directory's name relative to the pointer's directory and must
    equal the pointer's own name (``file_name``, by default ``where``) without ``.quilt``; it
    can never leave that directory. ``check_location=False`` skips the name match, for
    ``textconv``, which git hands a temporary file (the path must still be one segment).
    """
    if len(data) > MAX_POINTER_BYTES:
        raise FormatError(f"{where}: not a gitquilt pointer (larger than {MAX_POINTER_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: not a gitquilt pointer (not UTF-8 text)") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{where}: not a gitquilt pointer (invalid TOML: {exc})") from None
    fmt = doc.get("format")
    if type(fmt) is not int:
        raise FormatError(f"{where}: not a gitquilt pointer (no integer 'format' field)")
    if fmt > FORMAT_VERSION:
        raise UnsupportedFormat(f"{where}: pointer format {fmt} is newer than this gitquilt understands: upgrade gitquilt")
    if fmt < 1:
        raise FormatError(f"{where}: unknown pointer format {fmt}")
    if list(doc) != list(FIELDS):
        raise FormatError(
            f"{where}: malformed pointer: expected the fields {', '.join(FIELDS)} in that order, got {', '.join(doc)}"
        )
    path, top, files, size = doc["path"], doc["top_hash"], doc["files"], doc["bytes"]
    if not isinstance(path, str):
        raise FormatError(f"{where}: malformed pointer: 'path' must be a string")
    if not is_digest(top):
        raise FormatError(f"{where}: malformed pointer: 'top_hash' must be 64 lowercase hex characters")
    for name, value in (("files", files), ("bytes", size)):
        if type(value) is not int or value < 0:
            raise FormatError(f"{where}: malformed pointer: '{name}' must be a non-negative integer")
    expected = package_name_for(file_name or where) if check_location else path
    if "/" in path or path != expected:
        raise UnsafePath(f"{where}: pointer path {path!r} does not match its location (expected {expected!r})")
    check_key(path)
    return Pointer(path=path, top_hash=top, files=files, bytes=size)


def read_pointer(file: Path, where: str | None = None) -> Pointer:
    """Read and parse a pointer file from disk."""
    label = where or str(file)
    try:
        # never through a symbolic link (it could point out of the work tree), never
        # blocking on a FIFO
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FormatError(f"{label}: no such pointer file") from None
    except IsADirectoryError:
        raise FormatError(f"{label}: is a directory, not a pointer file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FormatError(f"{label}: is a symbolic link, not a pointer file (not following it)") from None
        raise FormatError(f"{label}: cannot read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise FormatError(f"{label}: is a directory, not a pointer file")
        if not stat.S_ISREG(mode):
            raise FormatError(f"{label}: not a regular file, not a pointer file")
        data = os.read(fd, MAX_POINTER_BYTES + 1)
    finally:
        os.close(fd)
    return parse_pointer(data, label)
