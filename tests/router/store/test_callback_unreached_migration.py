"""Migration 0006: a callback that never reached the customer is its own incident kind."""

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


def incident(kind: str, details: dict[str, object]) -> dict[str, object]:
    return {"kind": kind, "cause": "x", "details": details, "created_at": T0}


async def test_unreached_callbacks_move_to_their_own_kind_and_back(store_url: str) -> None:
    store = await open_store(store_url, migrate=False)
    try:
        async with store.transaction() as conn:
            await conn.run_sync(lambda c: migrations.upgrade(c, "0005"))
            await conn.execute(
                sa.insert(incidents),
                [
                    incident("delivery_failure", {"callback": "unreached", "attempts": 3}),
                    incident("delivery_failure", {"status": "failed"}),
                    incident("complaint", {}),
                ],
            )
        await store.migrate()
        async with store.transaction() as conn:
            rows = await conn.execute(sa.select(incidents.c.kind).order_by(incidents.c.id))
            assert [r.kind for r in rows] == ["callback_unreached", "delivery_failure", "complaint"]
            # The kind is in the check constraint now; anything else still is not.
            await conn.execute(sa.insert(incidents), [incident("callback_unreached", {})])
        with pytest.raises(StoreError, match="ck_incidents_kind"):
            async with store.transaction() as conn:
                await conn.execute(sa.insert(incidents), [incident("no_such_kind", {})])
        async with store.transaction() as conn:
            await conn.run_sync(lambda c: command.downgrade(migrations.config(c), "0005"))
            rows = await conn.execute(
                sa.select(incidents.c.kind, incidents.c.details).order_by(incidents.c.id)
            )
            back = [(r.kind, r.details.get("callback")) for r in rows]
    finally:
        await store.close()
    assert back == [
        ("delivery_failure", "unreached"),
        ("delivery_failure", None),
        ("complaint", None),
        ("delivery_failure", "unreached"),
    ]
