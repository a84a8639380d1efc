"""gitquilt.statcache: advisory (path, size, mtime_ns, inode) → sha256 cache in SQLite."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from gitquilt.statcache import RACY_NS, StatCache, stat_key

H1, H2 = "1" * 64, "2" * 64
OLD = 1_000_000_000_000_000_000  # an mtime long before "now"


def test_record_and_lookup(tmp_path: Path) -> None:
    sc = StatCache(tmp_path / "sc.sqlite")
    sc.record([("/w/pkg/a", 3, OLD, 7, H1), ("/w/pkg/sub/b", 4, OLD, 8, H2), ("/w/other/c", 1, OLD, 9, H1)])
    assert sc.lookup_dir("/w/pkg") == {"/w/pkg/a": (3, OLD, 7, H1), "/w/pkg/sub/b": (4, OLD, 8, H2)}
    assert sc.lookup_dir("/w/pkg/") == sc.lookup_dir("/w/pkg")
    sc.record([("/w/pkg/a", 5, OLD + 1, 7, H2)])  # replaced, not duplicated
    assert sc.lookup_dir("/w/pkg")["/w/pkg/a"] == (5, OLD + 1, 7, H2)
    sc.close()
    assert StatCache(tmp_path / "sc.sqlite").lookup_dir("/w/pkg")["/w/pkg/sub/b"] == (4, OLD, 8, H2)  # persisted


def test_lookup_does_not_leak_into_sibling_directories(tmp_path: Path) -> None:
    sc = StatCache(tmp_path / "sc.sqlite")
    sc.record([("/w/pkg/a", 1, OLD, 1, H1), ("/w/pkg0/a", 1, OLD, 1, H1), ("/w/pkg-x/a", 1, OLD, 1, H1),
               ("/w/pkg.d/a", 1, OLD, 1, H1), ("/w/pk/a", 1, OLD, 1, H1), ("/w/pkg", 1, OLD, 1, H1)])
    assert list(sc.lookup_dir("/w/pkg")) == ["/w/pkg/a"]


def test_racily_clean_entries_are_not_trusted(tmp_path: Path) -> None:
    """A file modified in the same instant it was hashed may change again unseen: re-hash it."""
    f = tmp_path / "f"
    f.write_bytes(b"x")
    st = os.stat(f)
    sc = StatCache(tmp_path / "sc.sqlite")
    sc.record([(str(f), *stat_key(st), H1)])  # recorded right after the write
    assert sc.lookup_dir(str(tmp_path)) == {}
    sc.record([(str(f), st.st_size, st.st_mtime_ns - 2 * RACY_NS, st.st_ino, H1)])
    assert str(f) in sc.lookup_dir(str(tmp_path))


def test_forget_dir(tmp_path: Path) -> None:
    sc = StatCache(tmp_path / "sc.sqlite")
    sc.record([("/w/pkg/a", 1, OLD, 1, H1), ("/w/keep/a", 1, OLD, 1, H1)])
    sc.forget_dir("/w/pkg")
    assert sc.lookup_dir("/w/pkg") == {}
    assert sc.lookup_dir("/w/keep") != {}


def test_fingerprints(tmp_path: Path) -> None:
    sc = StatCache(tmp_path / "sc.sqlite")
    assert sc.fingerprint(H1) is None
    sc.set_fingerprint(H1, H2)
    sc.set_fingerprint(H1, H2)
    assert sc.fingerprint(H1) == H2


def test_damaged_database_degrades_to_rehashing(tmp_path: Path) -> None:
    db = tmp_path / "sc.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    sc = StatCache(db)
    sc.record([("/w/a", 1, OLD, 1, H1)])
    assert sc.lookup_dir("/w") == {}
    assert sc.fingerprint(H1) is None
    sc.set_fingerprint(H1, H2)
    sc.forget_dir("/w")


def test_unusable_location_degrades(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    sc = StatCache(tmp_path / "file" / "sc.sqlite")  # parent is a file
    sc.record([("/w/a", 1, OLD, 1, H1)])
    assert sc.lookup_dir("/w") == {} and sc.fingerprint(H1) is None


def test_concurrent_writers(tmp_path: Path) -> None:
    def work(n: int) -> None:
        sc = StatCache(tmp_path / "sc.sqlite")
        sc.record([(f"/w/{n}/{i}", i, OLD, i, H1) for i in range(200)])
        sc.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sc = StatCache(tmp_path / "sc.sqlite")
    assert sum(len(sc.lookup_dir(f"/w/{n}")) for n in range(4)) == 800


def test_stat_key(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    st = os.stat(f)
    assert stat_key(st) == (3, st.st_mtime_ns, st.st_ino)


def test_prune_forgets_gone_and_changed_files_and_dead_fingerprints(tmp_path: Path) -> None:
    kept, changed = tmp_path / "kept", tmp_path / "changed"
    kept.write_bytes(b"k")
    changed.write_bytes(b"c")
    sc = StatCache(tmp_path / "sc.sqlite")
    rows = [(str(p), *stat_key(p.stat()), H1) for p in (kept, changed)]
    sc.record(rows + [(str(tmp_path / "gone" / "x"), 1, OLD, 1, H2)])
    changed.write_bytes(b"changed now")
    sc.set_fingerprint(H1, "fp1")
    sc.set_fingerprint(H2, "fp2")
    assert sc.prune(live_tops={H1}) == 2
    left = StatCache(tmp_path / "sc.sqlite")
    assert list(left._conn().execute("SELECT path FROM files")) == [(str(kept),)]  # type: ignore[union-attr]
    assert left.fingerprint(H1) == "fp1" and left.fingerprint(H2) is None
    assert left.prune() == 0


def test_prune_of_an_unusable_database_is_harmless(tmp_path: Path) -> None:
    (tmp_path / "sc.sqlite").write_bytes(b"not a database" * 100)
    assert StatCache(tmp_path / "sc.sqlite").prune() == 0
