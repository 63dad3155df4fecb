"""SQLite file setup shared by the store and the embedded bus."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from router.retry import Backoff


def enable_wal(cursor: Any, timeout: float) -> None:
    """Switch a new database file to WAL, retrying while another connection holds it.

    Switching needs an exclusive lock. When several connections open a new
    file together, each holds a shared lock and wants the exclusive one, and
    SQLite breaks that deadlock by failing one of them at once, without its
    busy handler. Once the file is in WAL mode (it stays so) this is one read.
    """
    deadline = time.monotonic() + timeout
    delays = Backoff(base=0.01, cap=0.2).delays()
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            mode = cursor.fetchone()[0]
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            delay = next(delays)
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
