import sqlite3
import threading
from pathlib import Path

import pytest

from router.sqlite import enable_wal


def _locked_file(path: Path) -> sqlite3.Connection:
    """A fresh database file with another connection holding its exclusive lock."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_enable_wal_waits_for_a_connection_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = _locked_file(path)
    # No busy handler: the refusal SQLite gives two connections that switch a new file
    # at the same moment (each holds a shared lock and wants the exclusive one).
    other = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode=WAL")
    release = threading.Timer(0.3, holder.rollback)
    release.start()
    try:
        enable_wal(other.cursor(), timeout=5.0)
    finally:
        release.join()
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.close()
    other.close()


def test_enable_wal_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = _locked_file(path)
    other = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enable_wal(other.cursor(), timeout=0.3)
    finally:
        holder.close()
        other.close()


def test_enable_wal_on_a_wal_file_only_reads(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    first = sqlite3.connect(path, isolation_level=None)
    enable_wal(first.cursor(), timeout=1.0)
    first.execute("CREATE TABLE t (x INTEGER)")
    first.execute("BEGIN IMMEDIATE")  # a writer: WAL readers need no lock
    second = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    try:
        enable_wal(second.cursor(), timeout=0.0)
        assert second.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        first.rollback()
        first.close()
        second.close()
