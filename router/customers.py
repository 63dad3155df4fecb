"""Importing known customers (CSV or YAML): names, tiers, tags and their identities.

Each row describes one customer. A row whose identities already belong to a
customer updates that customer; a row whose identities belong to two
different customers is not merged: the conflicting links become suggestions
for agents, as with any other conflicting link. Importing the same file twice
changes nothing the second time.

CSV columns: name, tier, tags (separated by `;`), language, email, phone,
telegram, webchat (several values of one kind separated by `;`). YAML: a
list of mappings with the same keys (lists allowed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from router.connector import load_registry
from router.errors import OmniError
from router.routing.identity import EMAIL, PHONE, Identity, IdentityError, normalize_identity
from router.store import Store
from router.store import routing as db
from router.store.schema import customers


def identity_kinds() -> tuple[str, ...]:
    """The columns an import row may give: email, phone, and the identity kind of each
    installed customer channel type (a Telegram user id, a chat visitor id...)."""
    declared = {s.sender_kind for s in load_registry().values() if s.customer_channel}
    return (EMAIL, PHONE, *sorted(declared - {EMAIL, PHONE}))


class CustomerFileError(OmniError):
    """The import file cannot be read."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CustomerRow:
    line: int
    name: str | None
    tier: str | None
    tags: tuple[str, ...]
    language: str | None
    identities: tuple[Identity, ...]


@dataclass(kw_only=True, slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    linked: int = 0
    suggested: int = 0
    problems: list[str] = field(default_factory=list)


def _values(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list | tuple):
        return [str(v).strip() for v in raw if str(v).strip()]
    return [v.strip() for v in str(raw).split(";") if v.strip()]


def parse_rows(
    records: Iterable[tuple[int, Mapping[str, Any]]],
    *,
    default_region: str | None,
    report: ImportReport,
) -> list[CustomerRow]:
    rows = []
    kinds = identity_kinds()
    for line, rec in records:
        idents: list[Identity] = []
        for kind in kinds:
            for value in _values(rec.get(kind)):
                try:
                    idents.append(normalize_identity(kind, value, default_region=default_region))
                except IdentityError as exc:
                    report.problems.append(f"line {line}: {kind}: {exc}")
        if not idents:
            report.problems.append(f"line {line}: no usable identity; row skipped")
            continue
        name = rec.get("name")
        rows.append(
            CustomerRow(
                line=line,
                name=str(name).strip() or None if name is not None else None,
                tier=(str(rec["tier"]).strip() or None) if rec.get("tier") else None,
                tags=tuple(_values(rec.get("tags"))),
                language=(str(rec["language"]).strip() or None) if rec.get("language") else None,
                identities=tuple(dict.fromkeys(idents)),
            )
        )
    return rows


def read_file(path: Path) -> list[tuple[int, Mapping[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CustomerFileError(f"cannot read {path}: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CustomerFileError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise CustomerFileError(f"{path}: expected a list of customers (mappings)")
        return [(i, r) for i, r in enumerate(data, 1)]
    reader = csv.DictReader(io.StringIO(text))
    unknown = set(reader.fieldnames or ()) - {"name", "tier", "tags", "language", *identity_kinds()}
    if unknown:
        raise CustomerFileError(f"{path}: unknown columns: {', '.join(sorted(unknown))}")
    return [(i, r) for i, r in enumerate(reader, 2)]


async def import_customers(
    store: Store, rows: Iterable[CustomerRow], now: datetime, report: ImportReport
) -> ImportReport:
    for row in rows:
        async with store.transaction() as conn:
            owners = {
                ident: await db.identity_owner(conn, ident.kind, ident.value)
                for ident in row.identities
            }
            known = sorted({o for o in owners.values() if o is not None})
            if known:
                customer_id = known[0]
                report.updated += 1
            else:
                customer_id = await db.create_customer(conn, row.name, now)
                report.created += 1
            values: dict[str, Any] = {"updated_at": now}
            if row.name:
                values["display_name"] = row.name
            if row.tier:
                values["tier"] = row.tier
            if row.tags:
                values["tags"] = sorted(set(row.tags))
            if row.language:
                values["language"] = row.language
            await conn.execute(
                customers.update().where(customers.c.id == customer_id).values(**values)
            )
            for ident, owner in owners.items():
                if owner is None:
                    await db.add_identity(conn, ident.kind, ident.value, customer_id, "import", now)
                    report.linked += 1
                elif owner != customer_id and await db.suggest_link(
                    conn, ident.kind, ident.value, owner, customer_id, "import", now
                ):
                    report.suggested += 1
                    report.problems.append(
                        f"line {row.line}: {ident.kind} belongs to another customer;"
                        " suggested to agents, not merged"
                    )
    return report
