"""The store: one data-access layer over SQLite (WAL, default) and PostgreSQL.

    store = await open_store("sqlite:///var/omnirouter.sqlite3")
    async with store.transaction() as conn:
        ...
    await store.close()

The schema lives in `schema.py`; its migrations ship in `migrations/` and run
on `open_store` (see `migrate.py`).
"""

from __future__ import annotations

from router.store.migrate import head
from router.store.store import Store, open_store
from router.store.url import Backend

__all__ = ["Backend", "Store", "head", "open_store"]
