"""Incidents get their own kind for a customer never reached by a callback.

A callback that ran out of attempts used to be recorded as `delivery_failure`
with `details.callback = "unreached"` (the kinds are a check constraint). Now
it is `callback_unreached`; the incidents recorded the old way move to it, so
a report by kind counts them all.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = ("complaint", "sla_breach", "bad_satisfaction", "delivery_failure")
NEW_KINDS = (*OLD_KINDS, "callback_unreached")
BATCH = 500

_incidents = sa.table(
    "incidents",
    sa.column("id", sa.BigInteger),
    sa.column("kind", sa.Text),
    sa.column("details", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
)


def _check(kinds: tuple[str, ...]) -> None:
    """Replace the check on `kind`. 0001 created it as `ck_incidents_ck_incidents_kind`
    (its name went through the naming convention twice): whichever name it has, it is
    recreated under the one the schema gives it."""
    names = {"ck_incidents_kind", "ck_incidents_ck_incidents_kind"}
    checks = sa.inspect(op.get_bind()).get_check_constraints("incidents")
    old = [c["name"] for c in checks if c["name"] in names]
    quoted = ", ".join(f"'{k}'" for k in kinds)
    # SQLite cannot alter a constraint: batch mode copies the table there.
    with op.batch_alter_table("incidents") as t:
        for name in old:
            # op.f: the name as it is, not run through the naming convention again.
            t.drop_constraint(op.f(name), type_="check")
        t.create_check_constraint(op.f("ck_incidents_kind"), f"kind IN ({quoted})")


def upgrade() -> None:
    _check(NEW_KINDS)
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_incidents.c.id, _incidents.c.details).where(
            _incidents.c.kind == "delivery_failure"
        )
    )
    ids = [
        r.id
        for r in rows
        if isinstance(r.details, dict) and r.details.get("callback") == "unreached"
    ]
    for start in range(0, len(ids), BATCH):
        conn.execute(
            sa.update(_incidents)
            .where(_incidents.c.id.in_(ids[start : start + BATCH]))
            .values(kind="callback_unreached")
        )


def downgrade() -> None:
    """Back to the old way: `delivery_failure` with `details.callback: unreached`."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_incidents.c.id, _incidents.c.details).where(
            _incidents.c.kind == "callback_unreached"
        )
    )
    updates = [
        {"iid": r.id, "details": {**(r.details or {}), "callback": "unreached"}} for r in rows
    ]
    stmt = (
        sa.update(_incidents)
        .where(_incidents.c.id == sa.bindparam("iid"))
        .values(kind="delivery_failure", details=sa.bindparam("details"))
    )
    for start in range(0, len(updates), BATCH):
        conn.execute(stmt, updates[start : start + BATCH])
    _check(OLD_KINDS)
