"""`omnirouter agents`: status, shift, load per channel type, reachability."""

from __future__ import annotations

import asyncio

import orjson

from router.store import open_store
from tests.router.ops.conftest import Cli, Floor


def test_agents_shows_status_load_and_who_deliveries_cannot_reach(floor: Floor, cli: Cli) -> None:
    code, out, err = cli("agents", "-c", floor.config)
    assert (code, err) == (0, "")
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == {"ana", "ben", "cy"}
    assert "email 1/1" in rows["ana"] and "available" in rows["ana"]  # Eva's invoice
    assert "email 0/1" in rows["ben"] and rows["ben"].rstrip().endswith("yes")
    # Cy serves only tg, whose channel is disabled: nothing reaches him.
    assert "telegram 0/2" in rows["cy"] and "email" not in rows["cy"]
    assert "unreachable: sink channel tg is disabled" in rows["cy"]


def test_agents_as_json_lines(floor: Floor, cli: Cli) -> None:
    code, out, _ = cli("agents", "-c", floor.config, "--json")
    agents = {a["id"]: a for a in map(orjson.loads, out.splitlines())}
    assert code == 0
    assert agents["ana"]["load"]["email"] == {"open": 1, "capacity": 1}
    assert agents["ana"]["shift"] == "always" and agents["ana"]["reachable"] is True
    assert agents["cy"]["unreachable"] == "sink channel tg is disabled"


def test_a_scheduled_agent_shows_their_shift_and_when_it_changes(
    tmp_path, cli: Cli, monkeypatch
) -> None:
    from tests.router.ops.conftest import floor_config

    def schedule(data):
        data["business_hours"] = {
            "never": {"timezone": "Europe/Madrid", "weekly": {}},
            "always": {
                "timezone": "UTC",
                "weekly": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            },
        }
        data["agents"][0]["schedule"] = "never"
        data["agents"][1]["schedule"] = "always"

    async def create() -> None:  # `agents` only reads the store: it must exist
        await (await open_store(f"sqlite:///{tmp_path}/store.sqlite3")).close()

    monkeypatch.delenv("P", raising=False)
    config = floor_config(tmp_path, schedule)
    asyncio.run(create())
    code, out, err = cli("agents", "-c", config, "--json")
    assert (code, err) == (0, ""), err
    agents = {a["id"]: a for a in map(orjson.loads, out.splitlines())}
    assert agents["ana"]["shift"] == "off" and agents["ana"]["shift_changes_at"] is None
    assert agents["ben"]["shift"] in ("on", "off")  # on weekdays, off at weekends
    assert agents["ben"]["shift_changes_at"] is not None
