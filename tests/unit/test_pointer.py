"""gitquilt.pointer: deterministic output, strict size-capped parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitquilt.errors import FormatError, QuiltError, UnsafePath, UnsupportedFormat
from gitquilt.pointer import MAX_POINTER_BYTES, Pointer, package_name_for, parse_pointer, read_pointer

TOP = "ab" * 32


def _text(path: str = "images", top: str = TOP, files: int = 3, size: int = 10, fmt: int = 1) -> str:
    return f'format = {fmt}\npath = "{path}"\ntop_hash = "{top}"\nfiles = {files}\nbytes = {size}\n'


def test_to_bytes_exact() -> None:
    assert Pointer("images", TOP, 3, 10).to_bytes() == (
        b"# gitquilt package pointer. `git quilt checkout` hydrates images/ from it.\n"
        b'format = 1\npath = "images"\n' + f'top_hash = "{TOP}"\n'.encode() + b"files = 3\nbytes = 10\n"
    )


@pytest.mark.parametrize("name", ["images", "with space", "café", "😀", 'q"uote', "back\\slash", "model.pt"])
def test_round_trip(name: str) -> None:
    p = Pointer(name, TOP, 0, 0)
    data = p.to_bytes()
    if "\\" in name:  # a valid TOML string, but never a valid key, so never a valid pointer
        with pytest.raises(UnsafePath):
            parse_pointer(data, f"{name}.quilt")
        return
    assert parse_pointer(data, f"dir/{name}.quilt") == p
    assert data == Pointer(name, TOP, 0, 0).to_bytes()  # deterministic


def test_parse_ignores_comments_and_blank_lines() -> None:
    text = "# a comment\n\n" + _text().replace("\nfiles", "  # trailing\nfiles")
    assert parse_pointer(text.encode(), "images.quilt") == Pointer("images", TOP, 3, 10)


def _pad_to(size: int) -> bytes:
    base = _text().encode()
    data = base + b"#" * (size - len(base) - 1) + b"\n"
    assert len(data) == size
    return data


def test_size_cap_minus_one_and_cap_are_accepted() -> None:
    assert parse_pointer(_pad_to(MAX_POINTER_BYTES - 1), "images.quilt").top_hash == TOP
    assert parse_pointer(_pad_to(MAX_POINTER_BYTES), "images.quilt").top_hash == TOP


def test_size_cap_plus_one_is_refused() -> None:
    with pytest.raises(FormatError, match=f"images.quilt: not a gitquilt pointer \\(larger than {MAX_POINTER_BYTES}"):
        parse_pointer(_pad_to(MAX_POINTER_BYTES + 1), "images.quilt")


def test_read_pointer_reads_at_most_cap_plus_one(tmp_path: Path) -> None:
    f = tmp_path / "images.quilt"
    f.write_bytes(_pad_to(MAX_POINTER_BYTES) + b"#" * (8 << 20))  # 8 MiB: must not be read whole
    with pytest.raises(FormatError, match="larger than"):
        read_pointer(f, "images.quilt")
    f.write_bytes(_pad_to(MAX_POINTER_BYTES))
    assert read_pointer(f).files == 3


def test_read_pointer_missing_or_directory(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such pointer file"):
        read_pointer(tmp_path / "x.quilt")
    (tmp_path / "d.quilt").mkdir()
    with pytest.raises(FormatError, match="is a directory"):
        read_pointer(tmp_path / "d.quilt")


@pytest.mark.parametrize(
    "text",
    [
        'path = "images"\nformat = 1\n' + f'top_hash = "{TOP}"\nfiles = 3\nbytes = 10\n',
        f'format = 1\ntop_hash = "{TOP}"\npath = "images"\nfiles = 3\nbytes = 10\n',
        f'format = 1\npath = "images"\ntop_hash = "{TOP}"\nbytes = 10\nfiles = 3\n',
        f'format = 1\npath = "images"\ntop_hash = "{TOP}"\nfiles = 3\n',
        _text() + 'extra = "x"\n',
        _text() + "[table]\nx = 1\n",
    ],
    ids=["format-second", "top-before-path", "bytes-before-files", "missing-bytes", "extra-key", "extra-table"],
)
def test_keys_out_of_order_missing_or_extra(text: str) -> None:
    with pytest.raises(FormatError, match="images.quilt: malformed pointer: expected the fields format, path"):
        parse_pointer(text.encode(), "images.quilt")


@pytest.mark.parametrize("fmt", [2, 99, 2**40])
def test_newer_format_says_upgrade(fmt: int) -> None:
    with pytest.raises(UnsupportedFormat, match="images.quilt: pointer format .* upgrade gitquilt"):
        parse_pointer(_text(fmt=fmt).encode(), "images.quilt")
    # the version gate comes first: a newer format may have other fields
    with pytest.raises(UnsupportedFormat, match="upgrade gitquilt"):
        parse_pointer(f"format = {fmt}\nchunks = [1, 2]\n".encode(), "images.quilt")


@pytest.mark.parametrize("fmt", [0, -1])
def test_older_format_refused(fmt: int) -> None:
    with pytest.raises(FormatError, match="unknown pointer format"):
        parse_pointer(_text(fmt=fmt).encode(), "images.quilt")


@pytest.mark.parametrize(
    "top", [TOP.upper(), TOP[:-1], TOP + "0", "sha256:" + TOP[7:], "", "g" * 64]
)
def test_invalid_top_hash(top: str) -> None:
    with pytest.raises(FormatError, match="images.quilt: malformed pointer: 'top_hash'"):
        parse_pointer(_text(top=top).encode(), "images.quilt")


@pytest.mark.parametrize(
    "text, message",
    [
        (_text().replace("files = 3", "files = -1"), "'files' must be a non-negative integer"),
        (_text().replace("bytes = 10", "bytes = 1.5"), "'bytes' must be a non-negative integer"),
        (_text().replace("bytes = 10", "bytes = true"), "'bytes' must be a non-negative integer"),
        (_text().replace("files = 3", 'files = "3"'), "'files' must be a non-negative integer"),
        (_text().replace('path = "images"', "path = 1"), "'path' must be a string"),
        (_text().replace("format = 1", 'format = "1"'), "no integer 'format' field"),
        (_text().replace("format = 1", "format = true"), "no integer 'format' field"),
    ],
)
def test_wrong_field_types(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_pointer(text.encode(), "images.quilt")


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe" + _text().encode("utf-16-le"), _text().encode()[:-5] + b"\xc3(\n", b"path = \"\xe9\"\n"],
)
def test_non_utf8_refused(data: bytes) -> None:
    with pytest.raises(FormatError, match="images.quilt: not a gitquilt pointer \\(not UTF-8 text\\)"):
        parse_pointer(data, "images.quilt")


@pytest.mark.parametrize(
    "data",
    [
        b'[tool.poetry]\nname = "x"\n',
        b'version = "https://git-lfs.github.com/spec/v1"\n',  # a git-lfs pointer
        b"",
        b"format = [1]\n",
    ],
)
def test_valid_toml_that_is_not_a_pointer(data: bytes) -> None:
    with pytest.raises(FormatError, match="images.quilt: not a gitquilt pointer"):
        parse_pointer(data, "images.quilt")


def test_invalid_toml() -> None:
    with pytest.raises(FormatError, match="images.quilt: not a gitquilt pointer \\(invalid TOML"):
        parse_pointer(b"format = = 1\n", "images.quilt")


@pytest.mark.parametrize(
    "path, where",
    [
        ("other", "images.quilt"),
        ("../x", "x.quilt"),
        ("../images", "images.quilt"),
        ("sub/images", "images.quilt"),
        ("data/images", "data/images.quilt"),  # path is relative to the pointer's directory
        ("/etc", "etc.quilt"),
        ("Images", "images.quilt"),
        ("", ".quilt"),
    ],
)
def test_path_mismatch_or_escape_refused(path: str, where: str) -> None:
    with pytest.raises(QuiltError) as exc:
        parse_pointer(_text(path=path).encode(), where)
    assert str(exc.value).startswith(where)


@pytest.mark.parametrize("name", ["..", ".", ".git", ".GIT", "git~1"])
def test_path_that_is_no_valid_key_refused(name: str) -> None:
    with pytest.raises(UnsafePath):
        parse_pointer(_text(path=name).encode(), f"{name}.quilt")


def test_package_name_for() -> None:
    assert package_name_for("data/images.quilt") == "images"
    assert package_name_for("model.pt.quilt") == "model.pt"
    for bad in ("images", ".quilt", "images.quilt.bak"):
        with pytest.raises(FormatError, match="must end in .quilt"):
            package_name_for(bad)


def test_errors_are_one_line() -> None:
    with pytest.raises(FormatError) as exc:
        parse_pointer(b"format = \n\n\n= 1\n", "images.quilt")
    assert "\n" not in str(exc.value)


def test_pointer_read_at_a_revision_is_named_by_file_name() -> None:
    """`checkout --rev v1` labels errors `images.quilt@v1`; the path check still uses the file name."""
    assert parse_pointer(_text().encode(), "images.quilt@v1", file_name="images.quilt").path == "images"
    with pytest.raises(UnsafePath, match="^images.quilt@v1: pointer path '../x'"):
        parse_pointer(_text(path="../x").encode(), "images.quilt@v1", file_name="images.quilt")


def test_without_location_check_the_path_must_still_be_one_safe_segment() -> None:
    """`git quilt textconv` gets a temporary file from git: the name cannot be checked, the path can."""
    assert parse_pointer(_text().encode(), "/tmp/XyZ123_pkg", check_location=False).path == "images"
    for bad in ("../x", "a/b", "..", ".git", "/etc"):
        with pytest.raises(UnsafePath):
            parse_pointer(_text(path=bad).encode(), "/tmp/XyZ123_pkg", check_location=False)


def test_read_pointer_never_follows_a_link_or_blocks_on_a_fifo(tmp_path: Path) -> None:
    import os

    outside = tmp_path / "outside.quilt"
    outside.write_bytes(Pointer("pkg", "a" * 64, 1, 1).to_bytes())
    (tmp_path / "pkg.quilt").symlink_to(outside)
    with pytest.raises(FormatError, match="symbolic link"):
        read_pointer(tmp_path / "pkg.quilt")
    os.mkfifo(tmp_path / "fifo.quilt")
    with pytest.raises(FormatError, match="not a regular file"):
        read_pointer(tmp_path / "fifo.quilt")
    (tmp_path / "dir.quilt").mkdir()
    with pytest.raises(FormatError, match="is a directory"):
        read_pointer(tmp_path / "dir.quilt")
    with pytest.raises(FormatError, match="no such pointer"):
        read_pointer(tmp_path / "none.quilt")
