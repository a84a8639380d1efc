"""Stat cache: (path, size, mtime_ns, inode) → sha256, in SQLite inside the cache dir.

Advisory only: it lets ``add`` and ``status`` skip re-hashing unchanged files. It is
never used by ``verify`` (a file edited with its mtime reset is caught there, not
here). Entries whose mtime is too close to the moment they were recorded are not
trusted ("racily clean", as in git), and any SQLite failure degrades to re-hashing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

#: An entry recorded less than this after the file's mtime is re-hashed on lookup.
RACY_NS = 50_000_000

Row = tuple[str, int, int, int, str]  # path, size, mtime_ns, inode, sha256


class StatCache:
    """SQLite-backed stat cache; every method tolerates a locked or damaged database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
                # switching a new database to WAL skips the busy handler; a racing process switches it anyway
                with contextlib.suppress(sqlite3.OperationalError):
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                    " ino INTEGER, sha256 TEXT, recorded_ns INTEGER) WITHOUT ROWID"
                )
                db.execute("CREATE TABLE IF NOT EXISTS fingerprints (top_hash TEXT PRIMARY KEY, files_fp TEXT)")
                self._db = db
            except (sqlite3.Error, OSError):
                return None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def lookup_dir(self, directory: str) -> dict[str, tuple[int, int, int, str]]:
        """Trusted entries below absolute ``directory``: path → (size, mtime_ns, inode, sha256)."""
        db = self._conn()
        if db is None:
            return {}
        lo = directory.rstrip("/") + "/"
        hi = directory.rstrip("/") + "0"  # '0' sorts right after '/'
        try:
            rows = db.execute(
                "SELECT path, size, mtime_ns, ino, sha256, recorded_ns FROM files WHERE path >= ? AND path < ?",
                (lo, hi),
            ).fetchall()
        except sqlite3.Error:
            return {}
        return {p: (s, m, i, h) for p, s, m, i, h, r in rows if r - m > RACY_NS}

    def record(self, rows: Iterable[Row]) -> None:
        """Remember hashes of files just read or written."""
        db = self._conn()
        if db is None:
            return
        now = time.time_ns()
        with contextlib.suppress(sqlite3.Error):
            db.execute("BEGIN")
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                [(p, s, m, i, h, now) for p, s, m, i, h in rows],
            )
            db.execute("COMMIT")

    def forget_dir(self, directory: str) -> None:
        db = self._conn()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute(
                "DELETE FROM files WHERE path >= ? AND path < ?",
                (directory.rstrip("/") + "/", directory.rstrip("/") + "0"),
            )

    def fingerprint(self, top_hash: str) -> str | None:
        db = self._conn()
        if db is None:
            return None
        try:
            row = db.execute("SELECT files_fp FROM fingerprints WHERE top_hash = ?", (top_hash,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else str(row[0])

    def set_fingerprint(self, top_hash: str, files_fp: str) -> None:
        db = self._conn()
        if db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            db.execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?)", (top_hash, files_fp))


    def prune(self, live_tops: set[str] | None = None, batch: int = 10_000) -> int:
        """Delete rows no lookup can use any more: the file is gone or has changed since
        (size, mtime or inode differ), and fingerprints of manifests not in ``live_tops``.
        Returns how many file rows went. ``gc`` calls it: without it the database grows
        with every clone, worktree and scratch directory that ever held a package."""
        db = self._conn()
        if db is None:
            return 0
        stale: list[tuple[str]] = []
        try:
            for path, size, mtime_ns, ino in db.execute("SELECT path, size, mtime_ns, ino FROM files"):
                try:
                    st = os.lstat(path)
                except (OSError, ValueError):
                    stale.append((path,))
                    continue
                if (st.st_size, st.st_mtime_ns, st.st_ino) != (size, mtime_ns, ino):
                    stale.append((path,))
            for i in range(0, len(stale), batch):
                db.execute("BEGIN")
                db.executemany("DELETE FROM files WHERE path = ?", stale[i : i + batch])
                db.execute("COMMIT")
            if live_tops is not None:
                dead = [(t,) for (t,) in db.execute("SELECT top_hash FROM fingerprints") if t not in live_tops]
                db.executemany("DELETE FROM fingerprints WHERE top_hash = ?", dead)
            if stale:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.execute("VACUUM")
        except sqlite3.Error:
            return 0
        return len(stale)


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """The parts of a stat result the cache compares: (size, mtime_ns, inode)."""
    return st.st_size, st.st_mtime_ns, st.st_ino
