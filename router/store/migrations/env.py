"""Alembic environment: runs on the connection `router.store.migrate` hands over.

Offline mode (SQL script output, e.g. for a DBA to review) uses the
`sqlalchemy.url` main option instead of a connection.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from router.store.schema import metadata


def _configure_common() -> dict[str, object]:
    return {
        "target_metadata": metadata,
        "compare_type": True,
        # SQLite cannot ALTER most things: later migrations use batch mode there.
        "render_as_batch": True,
    }


def run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(url=url, literal_binds=True, **_configure_common())  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(connection=connection, **_configure_common())  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    conn = context.config.attributes.get("connection")
    if not isinstance(conn, Connection):
        raise RuntimeError("run migrations through router.store.migrate (it passes a connection)")
    run_online(conn)
