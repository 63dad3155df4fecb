"""`omnirouter status`: the floor from the store as tables or JSON, the daemon's part from
its /status.json, and no channel secrets needed."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from router.cli import main
from router.config import check
from router.logs import setup_logging
from tests.harness.common import free_port
from tests.router.status.floor import PASSWORD, REFUSED, busy_floor
from tests.router.test_daemon import Registry


@pytest.fixture(autouse=True)
def memory_type(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command as installed, plus the test channels' `type: memory`; its log (set
    up as in a process of its own) goes to a stream that outlives the daemon's last line,
    and the logging config is put back afterwards."""
    specs = Registry().specs
    monkeypatch.setattr("router.connector.load_registry", lambda: specs)
    monkeypatch.setattr("router.config.loader.load_registry", lambda: specs)
    log = io.StringIO()

    def quiet(**kw: Any) -> None:
        setup_logging(**{**kw, "stream": log})

    monkeypatch.setattr("router.logs.setup_logging", quiet)
    handlers = list(logging.getLogger().handlers)
    level = logging.getLogger().level
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)


async def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    # In a thread: the command runs its own event loop, and the daemon answers on this one.
    code = await asyncio.to_thread(main, ["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_json_has_the_store_and_the_daemon_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with busy_floor(tmp_path) as floor:
        monkeypatch.setenv("OMNIROUTER_SUPERVISOR_PASSWORD", PASSWORD)
        # Commands that only read the store never ask for channel secrets.
        monkeypatch.delenv("HOOK_SECRET")
        assert check(floor.config) == 2
        capsys.readouterr()
        code, out, _ = await status(capsys, "-c", str(floor.config), "--json", "--url", floor.base)
        assert code == 0
        data = orjson.loads(out)
        assert {q["name"]: q["depth"] for q in data["floor"]["queues"]} == {
            "general": 2,
            "billing": 1,
        }
        agents = {a["id"]: a for a in data["floor"]["agents"]}
        assert agents["ana"]["load"] == [{"channel_type": "memory", "open": 1, "capacity": 1}]
        assert agents["ben"]["status"] == "away"
        assert agents["cy"]["on_shift"] is False
        assert agents["dee"]["unreachable"] == "sink channel old-hooks is disabled"
        broken = next(c for c in data["runtime"]["channels"] if c["name"] == "broken")
        assert broken["state"] == "down" and broken["reason"] == REFUSED
        assert data["runtime_note"] is None


async def test_status_table_says_when_the_daemon_is_not_reachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with busy_floor(tmp_path) as floor:
        nobody = f"http://127.0.0.1:{free_port()}"
        code, out, _ = await status(capsys, "-c", str(floor.config), "--url", nobody)
        assert code == 0
        assert f"Channels: unknown (daemon not reachable at {nobody})" in out
        assert "general" in out and "Ana" not in out  # the table names agents by id
        assert "ana" in out and "memory 1/1" in out
        monkeypatch.setenv("OMNIROUTER_SUPERVISOR_PASSWORD", "not the password")
        code, out, _ = await status(capsys, "-c", str(floor.config), "--url", floor.base)
        assert code == 0
        assert "refused the password in $OMNIROUTER_SUPERVISOR_PASSWORD" in out
        monkeypatch.setenv("OMNIROUTER_SUPERVISOR_PASSWORD", PASSWORD)
        code, out, _ = await status(capsys, "-c", str(floor.config), "--url", floor.base)
        assert code == 0
        assert REFUSED in out and "Last config reload: none since the start" in out


def test_status_with_an_invalid_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "channels.yaml"
    bad.write_text("version: 1\nqueues: [{name: 'Not A Name'}]\n", encoding="utf-8")
    assert main(["status", "-c", str(bad)]) == 2
    assert "Not A Name" in capsys.readouterr().err


def test_status_on_a_missing_sqlite_store_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped path must not read as a new, empty floor.
    missing = tmp_path / "nodir" / "typo.sqlite3"
    config = tmp_path / "channels.yaml"
    config.write_text(f"version: 1\nstore: {{url: 'sqlite:///{missing}'}}\n", encoding="utf-8")
    assert main(["status", "-c", str(config), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"status: the store cannot be read: no SQLite database at {missing}"
        " (omnirouter run creates it; is the path right?)\n"
    )
    assert not missing.parent.exists()
