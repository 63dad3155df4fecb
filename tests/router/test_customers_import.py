"""Importing known customers, and reading the incident register, from the command line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from router.cli import main
from router.customers import dialect
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
    assert first.returncode == 1, first.stderr  # a row was rejected
    assert "created 2, updated 0, unchanged 0, rejected 1; identities linked 5" in first.stdout
    assert "line 4: rejected: email identity: 'not-an-email'" in first.stderr
    second = omnirouter(
        "import-customers", "-c", str(config), "--default-region", "ES", str(csv_file)
    )
    assert "created 0, updated 0, unchanged 2, rejected 1; identities linked 0" in second.stdout
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
    assert result.returncode == 0  # suggested, not rejected
    assert "updated 1" in result.stdout and "conflicts suggested 1" in result.stdout
    assert "not merged" in result.stderr
    assert len(asyncio.run(table(tmp_path, customers))) == 2
    assert len(asyncio.run(table(tmp_path, link_suggestions))) == 1
    # Neither customer takes the row's name, and the same file again changes nothing.
    assert sorted(r.display_name for r in asyncio.run(table(tmp_path, customers))) == ["A", "B"]
    again = omnirouter("import-customers", "-c", str(config), str(data))
    assert "created 0, updated 0, unchanged 1" in again.stdout


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    bad = tmp_path / "c.csv"
    bad.write_text("name,shoe_size\nX,44\n")
    result = omnirouter("import-customers", "-c", str(config), str(bad))
    assert result.returncode == 2
    assert "unknown columns: shoe_size" in result.stderr


def test_incidents_lists_table_and_json(tmp_path: Path) -> None:
    async def create() -> None:  # `incidents` only reads the store: it must exist
        await (await open_store(f"sqlite:///{tmp_path}/store.sqlite3")).close()

    config = config_for(tmp_path)
    asyncio.run(create())
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


# --- the file as spreadsheet programs write it, and the report --------------------------


def import_in_process(
    capsys: pytest.CaptureFixture[str], config: Path, path: Path, *args: str
) -> tuple[int, str, str]:
    code = main(["import-customers", "-c", str(config), *args, str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def with_phone_channel(tmp: Path, region: str | None, *more_regions: str) -> Path:
    """A config whose phone channel(s) read national numbers in `region`."""
    blocks = [
        f"  - {{name: calls{i}, type: phone, enabled: false,"
        f' phone: {{hmac_secret: "${{H}}"{f", default_region: {r}" if r else ""}}}}}\n'
        for i, r in enumerate([region, *more_regions])
    ]
    path = tmp / "channels.yaml"
    path.write_text(
        f'version: 1\nstore: {{url: "sqlite:///{tmp}/store.sqlite3"}}\nchannels:\n'
        + "".join(blocks)
    )
    return path


async def identities_of(tmp: Path) -> dict[tuple[str, str], str]:
    return {(r.kind, r.value): r.customer_id for r in await table(tmp, identities)}


def test_a_semicolon_file_with_a_bom_from_a_spreadsheet_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    data = tmp_path / "clientes.csv"
    # As a Spanish spreadsheet program saves "CSV UTF-8": a BOM, `;`, CRLF, capitalised
    # headers, several values of one kind quoted in one cell.
    data.write_bytes(
        "\ufeffName;Tier;Tags;Email\r\n"
        'Ana Pérez;gold;"vip;mayorista";ana@example.es\r\n'
        "Jörg Müller;;;joerg@example.de\r\n".encode()
    )
    code, out, err = import_in_process(capsys, config, data)
    assert code == 0, err
    assert "created 2, updated 0, unchanged 0, rejected 0" in out
    rows = {r.display_name: r for r in asyncio.run(table(tmp_path, customers))}
    assert rows["Ana Pérez"].tags == ["mayorista", "vip"]
    assert set(asyncio.run(identities_of(tmp_path))) == {
        ("email", "ana@example.es"),
        ("email", "joerg@example.de"),
    }


def test_a_comma_file_whose_cells_hold_semicolons_stays_a_comma_file() -> None:
    text = "name,tags,email\nAna,vip;x;y,a@example.com\nBo,a;b,b@example.com\n"
    assert dialect(text).delimiter == ","
    assert dialect("name;email\nAna;a@example.com\n").delimiter == ";"
    assert dialect("email\na@example.com\n").delimiter == ","  # nothing to tell: comma


def test_national_numbers_are_read_in_the_phone_channels_region(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = with_phone_channel(tmp_path, "ES")
    data = tmp_path / "c.csv"
    data.write_text("name,phone\nAna,612 345 678\nBo,+49 30 1234567\n")
    code, _, err = import_in_process(capsys, config, data)
    assert code == 0, err
    assert set(asyncio.run(identities_of(tmp_path))) == {
        ("phone", "+34612345678"),
        ("phone", "+49301234567"),
    }
    # --default-region still says otherwise for one file.
    other = tmp_path / "d.csv"
    other.write_text("name,phone\nCy,030 1234568\n")
    code, _, err = import_in_process(capsys, config, other, "--default-region", "DE")
    assert code == 0, err
    assert ("phone", "+49301234568") in asyncio.run(identities_of(tmp_path))


def test_channels_that_disagree_on_the_region_need_it_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = with_phone_channel(tmp_path, "ES", "DE")
    data = tmp_path / "c.csv"
    data.write_text("name,phone\nAna,612 345 678\n")
    code, _, err = import_in_process(capsys, config, data)
    assert code == 2
    assert "different regions (DE, ES)" in err and "--default-region" in err
    code, _, err = import_in_process(capsys, config, data, "--default-region", "ES")
    assert code == 0, err


def test_rejected_rows_are_reported_by_line_and_reason_with_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)  # no phone channel: no region
    data = tmp_path / "c.csv"
    data.write_text(
        "name,email,phone\n"
        "Ana,ana@example.com,+34612345678\n"
        "Bo,bo@example,\n"  # line 3: not an address
        "Cy,cy@example.com,612 345 678\n"  # line 4: national, no region: whole row out
        '"Di\nla Grande",di@example.com,\n'  # lines 5-6: one row
        "Ed,,\n"  # line 7: nothing to know them by
        "Flo,flo@example.com,,stray\n"  # line 8: a cell past the columns
        "\n"
        ",,\n"  # blank rows: skipped, not rejected
    )
    code, out, err = import_in_process(capsys, config, data)
    assert code == 1
    assert "created 2, updated 0, unchanged 0, rejected 4" in out
    rejected = err.splitlines()
    assert [line.split(":", 1)[0] for line in rejected] == [
        "line 3",
        "line 4",
        "line 7",
        "line 8",
    ]
    assert "rejected: email identity: 'bo@example' is not an email address" in rejected[0]
    assert "no country code and no default region" in rejected[1]
    assert "no identity" in rejected[2]
    assert "no column name: stray" in rejected[3]
    # Nothing of a rejected row went in; the others did.
    known = asyncio.run(identities_of(tmp_path))
    assert ("email", "cy@example.com") not in known
    assert ("email", "di@example.com") in known


def test_an_identical_import_is_unchanged_and_a_changed_row_is_updated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    data = tmp_path / "c.yaml"
    data.write_text(
        "- {name: Ana, tier: gold, tags: [vip], language: es, email: ana@example.com}\n"
        "- {name: Bo, email: [bo@example.com, bo@work.example]}\n"
    )
    assert "created 2, updated 0" in import_in_process(capsys, config, data)[1]
    before = {r.id: r.updated_at for r in asyncio.run(table(tmp_path, customers))}
    code, out, _ = import_in_process(capsys, config, data)
    assert code == 0
    assert "created 0, updated 0, unchanged 2, rejected 0" in out
    assert {r.id: r.updated_at for r in asyncio.run(table(tmp_path, customers))} == before
    data.write_text(
        "- {name: Ana, tier: platinum, tags: [vip], language: es, email: ana@example.com}\n"
        "- {name: Bo, email: [bo@example.com, bo@home.example]}\n"
    )
    _, out, _ = import_in_process(capsys, config, data)
    assert "created 0, updated 2, unchanged 0, rejected 0; identities linked 1" in out


def test_a_file_that_is_not_utf8_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_for(tmp_path)
    data = tmp_path / "c.csv"
    data.write_bytes("name;email\nJosé;jose@example.es\n".encode("cp1252"))
    code, _, err = import_in_process(capsys, config, data)
    assert code == 2 and "not UTF-8" in err and "CSV UTF-8" in err
