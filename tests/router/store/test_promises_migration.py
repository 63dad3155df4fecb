"""Migration 0007: the promises table, and `broken_promise` among the incident kinds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from router.errors import StoreError
from router.store import migrate as migrations
from router.store import open_store
from router.store.schema import incidents

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def incident(kind: str) -> dict[str, object]:
    return {"kind": kind, "cause": "x", "details": {}, "created_at": T0}


async def test_broken_promises_are_an_incident_kind_and_go_on_downgrade(store_url: str) -> None:
    store = await open_store(store_url, migrate=False)
    try:
        async with store.transaction() as conn:
            await conn.run_sync(lambda c: migrations.upgrade(c, "0006"))
            await conn.execute(sa.insert(incidents), [incident("callback_unreached")])
        await store.migrate()
        async with store.transaction() as conn:
            await conn.execute(sa.insert(incidents), [incident("broken_promise")])
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            assert "promises" in tables
        with pytest.raises(StoreError, match="ck_incidents_kind"):
            async with store.transaction() as conn:
                await conn.execute(sa.insert(incidents), [incident("no_such_kind")])
        async with store.transaction() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrations.config(c), "0006"))
            kinds = [r.kind for r in await conn.execute(sa.select(incidents.c.kind))]
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        # Back at 0006 the kind is refused again.
        with pytest.raises(StoreError, match="ck_incidents_kind"):
            async with store.transaction() as conn:
                await conn.execute(sa.insert(incidents), [incident("broken_promise")])
    finally:
        await store.close()
    assert kinds == ["callback_unreached"] and "promises" not in tables
