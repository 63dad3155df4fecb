"""`omnirouter incidents`: the incident register, newest first, as people refer to it.

Each incident shows the `#REF` that agents and customers quote, the customer
(their name, else an identity) and the channel, beside its kind and cause.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import orjson

from router.ops.console import console, table, when
from router.store import Store, views


async def read(store: Store, limit: int, kind: str | None) -> list[dict[str, Any]]:
    async with store.transaction(readonly=True) as conn:
        rows = await views.incidents_with_context(conn, limit, kind)
        unnamed = sorted({r.customer for r in rows if r.customer and not r.customer_name})
        named = await views.first_identity(conn, unnamed)
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "created_at": r.created_at,
            "ref": r.ref,
            "channel": r.channel,
            "conversation_id": r.conversation_id,
            "customer_id": r.customer,
            "customer": r.customer_name or named.get(r.customer or ""),
            "cause": r.cause,
            "details": r.details,
        }
        for r in rows
    ]


def show(rows: list[dict[str, Any]], *, as_json: bool, out: IO[str] | None = None) -> None:
    if as_json:
        out = sys.stdout if out is None else out
        for row in rows:
            out.write(orjson.dumps(row).decode() + "\n")
        return
    if not rows:
        console(out).print("no incidents")
        return
    t = table("ID", "WHEN (UTC)", "KIND", "REF", "CUSTOMER", "CHANNEL", "CAUSE")
    for r in rows:
        ref = f"#{r['ref']}" if r["ref"] else "-"
        t.add_row(
            str(r["id"]),
            when(r["created_at"]),
            r["kind"],
            ref,
            r["customer"] or "-",
            r["channel"] or "-",
            r["cause"],
        )
    console(out).print(t)
