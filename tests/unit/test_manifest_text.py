"""gitquilt.manifest_text and the store's canonical-text copies of manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitquilt.digest import hash_bytes
from gitquilt.errors import FormatError, IntegrityError, QuiltError, UnsafePath
from gitquilt.manifest import HEADER, Entry, Manifest
from gitquilt.manifest_io import manifest_to_bytes
from gitquilt.manifest_text import parse_canonical_text, try_parse_canonical_text
from gitquilt.store import Store

H = hash_bytes(b"x")


def _manifest() -> Manifest:
    return Manifest.from_entries(
        [Entry("b/c.txt", H, 1, True), Entry("a.bin", hash_bytes(b""), 0), Entry("é/ü", H, 1, False, '{"k":1}')],
        {"message": "hi", "n": [1, 2]},
    )


def _text(lines: list[str], meta: str = "{}") -> bytes:
    return HEADER + f"meta\t{meta}\n".encode() + "".join(line + "\n" for line in lines).encode()


def test_round_trip_keeps_every_field() -> None:
    m = _manifest()
    back = parse_canonical_text(m.canonical_text(), m.top_hash)
    assert list(back) == list(m)
    assert back.meta == m.meta and back.top_hash == m.top_hash
    assert back.entry_metas == m.entry_metas and back.executable_flags == m.executable_flags


def test_empty_manifest() -> None:
    m = Manifest.from_entries([], {})
    assert len(parse_canonical_text(m.canonical_text(), m.top_hash)) == 0


def test_text_under_another_name_is_refused() -> None:
    m = _manifest()
    with pytest.raises(IntegrityError, match="not to its name"):
        parse_canonical_text(m.canonical_text(), "0" * 64)


@pytest.mark.parametrize(
    "line",
    [
        f"a\t{H}\t+1\t-\t{{}}",  # int() takes it, the canonical form does not
        f"a\t{H}\t01\t-\t{{}}",
        f"a\t{H}\t1\ty\t{{}}",  # only "x" or "-"
        f"a\t{H}\t1\t-\t{{ }}",  # entry meta not canonical
    ],
)
def test_non_canonical_fields_are_refused_even_when_named_by_their_hash(line: str) -> None:
    data = _text([line])
    with pytest.raises(QuiltError):
        parse_canonical_text(data, hash_bytes(data))


@pytest.mark.parametrize(
    "lines, error",
    [
        ([f"../evil\t{H}\t1\t-\t{{}}"], UnsafePath),
        ([f".git/hooks/x\t{H}\t1\t-\t{{}}"], UnsafePath),
        ([f"a\t{H}\t1\t-\t{{}}", f"a/b\t{H}\t1\t-\t{{}}"], UnsafePath),  # file and directory
        ([f"a\t{H}\t1\t-\t{{}}", f"a\t{H}\t1\t-\t{{}}"], UnsafePath),  # duplicate
        ([f"a\t{H.upper()}\t1\t-\t{{}}"], FormatError),
        ([f"a\t{H}\t-1\t-\t{{}}"], FormatError),
        ([f"a\t{H}\tten\t-\t{{}}"], FormatError),
        ([f"a\t{H}\t1\t-"], FormatError),
        ([f"a\t{H}\t1\t-\t{{}}\textra"], FormatError),
    ],
)
def test_hostile_text_is_refused_before_use(lines: list[str], error: type[Exception]) -> None:
    data = _text(lines)
    with pytest.raises(error):
        parse_canonical_text(data, hash_bytes(data))  # named by its own hash: the hash alone proves nothing


def test_out_of_order_lines_do_not_match_their_hash() -> None:
    data = _text([f"b\t{H}\t1\t-\t{{}}", f"a\t{H}\t1\t-\t{{}}"])
    with pytest.raises(IntegrityError):
        parse_canonical_text(data, hash_bytes(data))


@pytest.mark.parametrize("data", [b"", b"garbage\n", HEADER, HEADER + b"meta\t{}", b"\xff\xfe", HEADER + b"x\t{}\n"])
def test_garbage_is_a_format_error(data: bytes) -> None:
    assert try_parse_canonical_text(data, hash_bytes(data)) is None
    with pytest.raises(QuiltError):
        parse_canonical_text(data, hash_bytes(data))


def test_store_writes_the_text_copy_and_reads_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    m = _manifest()
    top = store.put_manifest(m)
    assert store.manifest_text_path(top).read_bytes() == m.canonical_text()
    store.manifest_path(top).write_bytes(b"not parquet any more")  # proves the text copy is what is read
    assert list(store.read_manifest(top)) == list(m)


def test_store_rebuilds_a_missing_or_damaged_text_copy(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    m = _manifest()
    top = m.top_hash
    store.put_manifest_bytes(manifest_to_bytes(m), top)  # as a fetch does: decoded, then stored
    assert store.manifest_text_path(top).read_bytes() == m.canonical_text()
    store.manifest_text_path(top).write_bytes(m.canonical_text()[:-3])  # torn
    assert list(store.read_manifest(top)) == list(m)
    assert store.manifest_text_path(top).read_bytes() == m.canonical_text()
    store.drop_manifest_text(top)
    store.read_manifest(top)
    assert store.manifest_text_path(top).exists()
    store.manifest_text_path(top).write_bytes(b"junk")
    store.check_manifest_text(top)  # what verify does
    assert not store.manifest_text_path(top).exists()
    store.quarantine_manifest(top)
    assert not store.manifest_text_path(top).exists() and not store.has_manifest(top)


def test_text_copy_is_not_a_manifest_by_itself(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    m = _manifest()
    store.manifest_text_path(m.top_hash).parent.mkdir(parents=True, exist_ok=True)
    store.manifest_text_path(m.top_hash).write_bytes(m.canonical_text())
    assert list(store.iter_manifests()) == []
    from gitquilt.errors import NotFound

    with pytest.raises(NotFound):
        store.read_manifest(m.top_hash)


def test_reading_a_cached_manifest_imports_no_pyarrow(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache").ensure()
    top = store.put_manifest(_manifest())
    code = (
        "import sys; from gitquilt.store import Store; "
        f"m = Store({str(tmp_path / 'cache')!r}).read_manifest({top!r}); "
        "assert len(m) == 3; assert 'pyarrow' not in sys.modules and 'numpy' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_directory_remote_holds_parquet_only(tmp_path: Path) -> None:
    import io

    from gitquilt.remotes.local import DirectoryRemote

    m = _manifest()
    data = manifest_to_bytes(m)
    remote = DirectoryRemote(tmp_path / "remote")
    remote.put(f"manifests/{m.top_hash}.parquet", io.BytesIO(data), len(data))
    assert sorted(p.name for p in (tmp_path / "remote" / "manifests").iterdir()) == [f"{m.top_hash}.parquet"]


@pytest.mark.parametrize(
    ("field", "spelling"),
    [("exec", ","), ("exec", "X"), ("exec", ""), ("size", "+1"), ("size", "01"), ("size", "1_0"), ("size", " 1"),
     ("size", "١")],  # the last: an Arabic-Indic digit one, which int() reads as 1
)
def test_a_non_canonical_spelling_of_the_same_entry_is_refused(field: str, spelling: str) -> None:
    """Found by the fuzzer: ',' was read as 'not executable' and '01' as 1, so a text that
    is not the canonical one rebuilt the same manifest and passed the top-hash check."""
    m = Manifest.from_entries([Entry("a.txt", H, 1, False), Entry("b.txt", H, 10, True)], {})
    good = m.canonical_text()
    assert parse_canonical_text(good, m.top_hash).top_hash == m.top_hash
    old = f"\t1\t-\t{{}}\n" if field == "exec" else f"\t10\tx\t{{}}\n"
    new = f"\t1\t{spelling}\t{{}}\n" if field == "exec" else f"\t{spelling}\tx\t{{}}\n"
    bad = good.replace(old.encode(), new.encode())
    assert bad != good
    with pytest.raises(FormatError):
        parse_canonical_text(bad, m.top_hash)
    assert try_parse_canonical_text(bad, m.top_hash) is None
