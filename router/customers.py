"""Importing known customers (CSV or YAML): names, tiers, tags and their identities.

Each row describes one customer. A row whose identities already belong to a
customer updates that customer; a row whose identities belong to two
different customers is not merged: the conflicting links become suggestions
for agents, as with any other conflicting link. Importing the same file twice
changes nothing the second time: every row is counted `unchanged`.

A row with a value that cannot be read (an address that is not one, a
national phone number with no region to read it in) is rejected whole, with
its line and the reason: nothing of it is half-imported, and the rest of the
file still is. The columns are documented in docs/routing.md ("Importing
customers").

CSV: UTF-8 (a byte-order mark, as spreadsheet programs write, is fine); the
delimiter is detected from the start of the file, since spreadsheet programs
in Spain or Germany write `;` where others write `,` (comma when unsure).
Header names are read case-insensitively. YAML: a list of mappings with the
same keys (lists allowed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from router.config import Config
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


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row left out, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: rejected: {self.reason}"


@dataclass(kw_only=True, slots=True)
class ImportReport:
    """What an import did, row by row: each row is created, updated, unchanged or
    rejected; `notes` are what an operator should know of rows that went in (a link
    suggested to agents instead of a merge)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    linked: int = 0
    suggested: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The rejected rows, each with its line and reason."""
        return [str(r) for r in self.rejected]

    def summary(self) -> str:
        return (
            f"created {self.created}, updated {self.updated}, unchanged {self.unchanged},"
            f" rejected {len(self.rejected)}; identities linked {self.linked},"
            f" conflicts suggested {self.suggested}"
        )


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
    """The rows to import; a row with a value that cannot be read is rejected whole
    (in `report`) and left out."""
    kinds = identity_kinds()
    rows = []
    for line, rec in records:
        row = _row(line, rec, kinds, default_region)
        if isinstance(row, Rejected):
            report.rejected.append(row)
        else:
            rows.append(row)
    return rows


def _row(
    line: int, rec: Mapping[str, Any], kinds: Sequence[str], default_region: str | None
) -> CustomerRow | Rejected:
    if rec.get(_EXTRA):
        return Rejected(line, "a value in a cell with no column name: " + rec[_EXTRA][:80])
    idents: list[Identity] = []
    for kind in kinds:
        for value in _values(rec.get(kind)):
            try:
                idents.append(normalize_identity(kind, value, default_region=default_region))
            except IdentityError as exc:
                return Rejected(line, str(exc))
    if not idents:
        return Rejected(line, "no identity (" + ", ".join(kinds) + ")")
    return CustomerRow(
        line=line,
        name=_text(rec.get("name")),
        tier=_text(rec.get("tier")),
        tags=tuple(dict.fromkeys(_values(rec.get("tags")))),
        language=_text(rec.get("language")),
        identities=tuple(dict.fromkeys(idents)),
    )


def _text(raw: Any) -> str | None:
    return (str(raw).strip() or None) if raw is not None else None


def default_region(config: Config) -> str | None:
    """The region national phone numbers are read in: the one the configured channels'
    types read them in (a phone channel's `default_region`), read through the registry.
    Channels that disagree are an error: which one a file follows cannot be told."""
    registry = load_registry()
    regions = set()
    for ch in config.channels:
        spec = registry.get(ch.type)
        if spec is not None and spec.default_region is not None and ch.settings is not None:
            region = spec.default_region(ch.settings)
            if region:
                regions.add(region.upper())
    if len(regions) > 1:
        named = ", ".join(sorted(regions))
        raise CustomerFileError(
            f"the channels read national numbers in different regions ({named}):"
            " say which with --default-region"
        )
    return next(iter(regions), None)


# Characters of the file the CSV dialect is told from: a few hundred rows, whatever the
# file's size (csv.Sniffer's cost grows with its sample).
SNIFF_CHARS = 16 * 1024
DELIMITERS = ",;\t|"
# A record's key for cells outside every named column (header names are stripped,
# so none is this).
_EXTRA = " stray"


def columns() -> set[str]:
    return {"name", "tier", "tags", "language", *identity_kinds()}


def read_file(path: Path) -> list[tuple[int, Mapping[str, Any]]]:
    """The file's records, each with the line it starts on."""
    try:
        # utf-8-sig: the byte-order mark a spreadsheet program writes is not a column.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CustomerFileError(
            f"{path}: not UTF-8 (byte {exc.start}): save it as CSV UTF-8 and import again"
        ) from exc
    except OSError as exc:
        raise CustomerFileError(f"cannot read {path}: {exc}") from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CustomerFileError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise CustomerFileError(f"{path}: expected a list of customers (mappings)")
        return [(i, r) for i, r in enumerate(data, 1)]
    return list(_csv_records(path, text))


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), dialect(text))
    header = [h.strip().lower() for h in next(reader, [])]
    unknown = set(header) - columns() - {""}  # a trailing delimiter names no column
    if unknown:
        raise CustomerFileError(
            f"{path}: unknown columns: {', '.join(sorted(unknown))}"
            f" (known: {', '.join(sorted(columns()))})"
        )
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CustomerFileError(f"{path}: line {line}: {exc}") from exc
        if not any(c.strip() for c in cells):
            continue  # a blank line, or a row of empty cells as spreadsheets leave
        named = [(h, c) for h, c in zip(header, cells, strict=False) if h]
        stray = [c.strip() for h, c in zip(header, cells, strict=False) if not h]
        stray += [c.strip() for c in cells[len(header) :]]
        record: dict[str, Any] = dict(named)
        if any(stray):
            record[_EXTRA] = ", ".join(c for c in stray if c)
        yield line, record


def dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect of `text`, told by csv.Sniffer from its first lines; a sniffed
    delimiter that does not split the header into known columns, while a comma does,
    loses to the comma (a `;` inside a comma file's tags column can fool the sniffer)."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS:
        sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only
    try:
        sniffed: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, DELIMITERS)
    except csv.Error:
        return csv.excel
    first = sample.splitlines()[0] if sample else ""
    known = columns()

    def fits(d: type[csv.Dialect] | csv.Dialect) -> bool:
        header = next(csv.reader([first], d), [])
        names = {h.strip().lower() for h in header} - {""}
        return bool(names) and names <= known

    return sniffed if fits(sniffed) or not fits(csv.excel) else csv.excel


async def import_customers(
    store: Store, rows: Iterable[CustomerRow], now: datetime, report: ImportReport
) -> ImportReport:
    """Import `rows` one by one (any iterable: a progress bar can wrap it), each in its
    own transaction, counted in `report` as created, updated or unchanged."""
    for row in rows:
        async with store.transaction() as conn:
            await _import_row(conn, row, now, report)
    return report


async def _import_row(conn: Any, row: CustomerRow, now: datetime, report: ImportReport) -> None:
    owners = {
        ident: await db.identity_owner(conn, ident.kind, ident.value) for ident in row.identities
    }
    known = sorted({o for o in owners.values() if o is not None})
    values: dict[str, Any] = {}
    if row.name:
        values["display_name"] = row.name
    if row.tier:
        values["tier"] = row.tier
    if row.tags:
        values["tags"] = sorted(set(row.tags))
    if row.language:
        values["language"] = row.language
    if len(known) > 1:
        # Identities of several customers: which one the row describes is for agents to
        # say (the suggestions below); none of them takes its name, tier or tags, or two
        # rows of one file would rename a customer back and forth on every import.
        customer_id, changed = known[0], {}
        report.notes.append(
            f"line {row.line}: identities of {len(known)} customers; their details left as they are"
        )
    elif known:
        customer_id = known[0]
        current = await db.customer(conn, customer_id)
        changed = {k: v for k, v in values.items() if getattr(current, k) != v}
    else:
        customer_id = (await db.create_customer(conn, row.name, now)).id
        changed = values
    linked = suggested = 0
    for ident, owner in owners.items():
        if owner is None:
            await db.add_identity(conn, ident.kind, ident.value, customer_id, "import", now)
            linked += 1
        elif owner != customer_id and await db.suggest_link(
            conn, ident.kind, ident.value, owner, customer_id, "import", now
        ):
            suggested += 1
            report.notes.append(
                f"line {row.line}: {ident.kind} belongs to another customer;"
                " suggested to agents, not merged"
            )
    if changed or linked:
        await conn.execute(
            customers.update()
            .where(customers.c.id == customer_id)
            .values(**changed, updated_at=now)
        )
    report.linked += linked
    report.suggested += suggested
    if not known:
        report.created += 1
    elif changed or linked or suggested:
        report.updated += 1
    else:
        report.unchanged += 1
