"""A contact centre's floor in a store: scenario.yaml with its channels enabled and
their secrets unset, a few conversations routed by the real routing code, and the
`cli` helper that runs `omnirouter` in this process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from router.cli import main
from router.config import load_config
from router.simulate import Simulation
from router.store import open_store
from tests.router.routing.scenarios import CONFIG, T0, at, mail

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """The commands set up logging (to stderr) as the real command does: undone after."""
    yield
    structlog.reset_defaults()
    for h in list(logging.getLogger().handlers):
        if type(h).__name__ == "_ToStructlog":
            logging.getLogger().removeHandler(h)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("agents", "-c", path)` -> (exit status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def floor_config(tmp: Path, change: Callable[[Any], None] | None = None) -> Path:
    """scenario.yaml with the store and the bus under `tmp`, every channel enabled (their
    `${P}` and `${T}` secrets are set nowhere) except `tg`: cy, whose sink it is, is
    unreachable."""
    data = yaml.safe_load(CONFIG.read_text())
    data["store"] = {"url": f"sqlite:///{tmp}/store.sqlite3"}
    data["bus"] = {"backend": "embedded", "embedded": {"path": f"{tmp}/bus.sqlite3"}}
    for channel in data["channels"]:
        channel["enabled"] = channel["name"] != "tg"
    if change is not None:
        change(data)
    path = tmp / "channels.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Floor:
    config: Path
    refs: dict[str, str]  # thread -> the conversation's reference
    ids: dict[str, str]  # thread -> the conversation's id


async def _populate(config: Path) -> Floor:
    store = await open_store(f"sqlite:///{config.parent}/store.sqlite3")
    try:
        sim = Simulation(load_config(config, env={}, channel_secrets=False), store)
        await sim.start(datetime.fromisoformat(T0))
        await sim.step(0, mail("eva@shop.test", "<inv@x>", "My invoice is wrong", at=at(0)))
        await sim.step(1, mail("raj@shop.test", "<c@x>", "This is unacceptable!", at=at(1)))
        await sim.step(
            2,
            {"agent": "ana", "reply": "Fixed, sorry!", "conversation": "mail/<inv@x>", "at": at(5)},
        )
        async with store.transaction(readonly=True) as conn:
            rows = (
                await conn.exec_driver_sql("SELECT thread_key, ref, id FROM conversations")
            ).all()
    finally:
        await store.close()
    return Floor(config, {t: r for t, r, _ in rows}, {t: i for t, _, i in rows})


@pytest.fixture
def floor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Floor:
    monkeypatch.delenv("P", raising=False)
    monkeypatch.delenv("T", raising=False)
    return asyncio.run(_populate(floor_config(tmp_path)))
