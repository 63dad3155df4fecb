"""Importing known customers, and reading the incident register, from the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import sqlalchemy as sa

from router.store import open_store
from router.store import routing as db
from router.store.schema import customers, identities, link_suggestions
from tests.harness.daemon import ROOT


def config_for(tmp: Path) -> Path:
    path = tmp / "channels.yaml"
    path.write_text(f'version: 1\nstore: {{url: "sqlite:///{tmp}/store.sqlite3"}}\n')
    return path


def omnirouter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


async def table(tmp: Path, t: sa.Table) -> list[sa.Row]:
    store = await open_store(f"sqlite:///{tmp}/store.sqlite3")
    try:
        async with store.transaction(readonly=True) as conn:
            return list((await conn.execute(sa.select(t))).all())
    finally:
        await store.close()


def test_csv_import_links_identities_and_is_idempotent(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "name,tier,tags,email,phone,telegram\n"
        "Ana Pérez,gold,vip;wholesale,Ana@Example.com,612 345 678,555\n"
        "Bo,,,bo@example.com;bo@work.example,,\n"
        "Nobody,,,not-an-email,,\n"
    )
    first = omnirouter(
        "import-customers", "-c", str(config), "--default-region", "ES", str(csv_file)
    )
    assert first.returncode == 0, first.stderr
    assert "created 2, updated 0, identities linked 5" in first.stdout
    assert "line 4: email" in first.stderr and "no usable identity" in first.stderr
    second = omnirouter(
        "import-customers", "-c", str(config), "--default-region", "ES", str(csv_file)
    )
    assert "created 0, updated 2, identities linked 0" in second.stdout
    rows = asyncio.run(table(tmp_path, customers))
    ana = next(r for r in rows if r.display_name == "Ana Pérez")
    assert (ana.tier, ana.tags) == ("gold", ["vip", "wholesale"])
    idents = {(r.kind, r.value): r.customer_id for r in asyncio.run(table(tmp_path, identities))}
    assert idents[("email", "ana@example.com")] == ana.id
    assert idents[("phone", "+34612345678")] == ana.id
    assert idents[("telegram", "555")] == ana.id


def test_conflicting_row_is_suggested_not_merged(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    data = tmp_path / "customers.yaml"
    data.write_text("- {name: A, email: a@example.com}\n- {name: B, email: b@example.com}\n")
    assert omnirouter("import-customers", "-c", str(config), str(data)).returncode == 0
    data.write_text("- {name: AB, email: [a@example.com, b@example.com]}\n")
    result = omnirouter("import-customers", "-c", str(config), str(data))
    assert "conflicts suggested 1" in result.stdout
    assert "not merged" in result.stderr
    assert len(asyncio.run(table(tmp_path, customers))) == 2
    assert len(asyncio.run(table(tmp_path, link_suggestions))) == 1


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    bad = tmp_path / "c.csv"
    bad.write_text("name,shoe_size\nX,44\n")
    result = omnirouter("import-customers", "-c", str(config), str(bad))
    assert result.returncode == 2
    assert "unknown columns: shoe_size" in result.stderr


def test_incidents_lists_table_and_json(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert "no incidents" in omnirouter("incidents", "-c", str(config)).stdout

    async def add() -> None:
        from datetime import UTC, datetime

        store = await open_store(f"sqlite:///{tmp_path}/store.sqlite3")
        try:
            async with store.transaction() as conn:
                await db.record_incident(
                    conn,
                    "sla_breach",
                    None,
                    None,
                    "first-response target missed",
                    {"due": "x"},
                    datetime.now(UTC),
                )
                await db.record_incident(
                    conn, "complaint", None, None, "complaint detected", {}, datetime.now(UTC)
                )
        finally:
            await store.close()

    asyncio.run(add())
    table_out = omnirouter("incidents", "-c", str(config)).stdout
    assert "sla_breach" in table_out and "complaint detected" in table_out
    lines = omnirouter("incidents", "-c", str(config), "--json", "--kind", "sla_breach").stdout
    [obj] = [orjson.loads(line) for line in lines.splitlines()]
    assert obj["kind"] == "sla_breach" and obj["details"] == {"due": "x"}
