"""Schema migrations, run from code: no alembic.ini, no alembic CLI needed.

The migration scripts ship inside the package (`router/store/migrations/`).
`upgrade()` runs on a synchronous connection that is already inside a
transaction; `Store` calls it through `AsyncConnection.run_sync`, so
migrations use the same engine and driver as everything else.

On PostgreSQL the upgrade first takes a transaction-scoped advisory lock, so
several router processes starting at once migrate one after the other (and
all but the first find nothing to do). On SQLite the write transaction
(`BEGIN IMMEDIATE`) does the same.

For developers, a new migration is generated against a scratch database::

    python -m router.store.migrations revision "add the foo column"
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).resolve().with_name("migrations")

# pg_advisory_xact_lock key: "omnimigr" as a 64-bit integer
_PG_LOCK_KEY = int.from_bytes(b"omnimigr", "big") & 0x7FFF_FFFF_FFFF_FFFF


def config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic config built in code, pointing at the packaged scripts."""
    cfg = Config()
    # configparser interpolation: a '%' in the path must be doubled
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # v0002_add_foo.py: a valid module name, sorted by revision
    cfg.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The revision the packaged migrations lead to."""
    heads = ScriptDirectory.from_config(config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads {heads}: merge them")
    return heads[0]


def current(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Migrate the database to `revision` inside the connection's transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    command.upgrade(config(connection), revision)


def revision(message: str) -> None:
    """Autogenerate a new migration: diff `schema.py` against a database at head."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.sqlite3")
        try:
            with engine.begin() as conn:
                upgrade(conn)
            with engine.begin() as conn:
                rev_id = f"{int(head()) + 1:04d}"
                command.revision(config(conn), message=message, autogenerate=True, rev_id=rev_id)
        finally:
            engine.dispose()
