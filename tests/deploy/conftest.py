"""What a running daemon exposes on /metrics: the names the dashboard and the alert rules
may query (one daemon for the whole directory)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.harness.metrics import exposed_names, floor_daemon, scrape


async def _scrape_once(tmp: Path) -> str:
    async with floor_daemon(tmp) as daemon:
        return await scrape(daemon)


@pytest.fixture(scope="session")
def daemon_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    text = asyncio.run(_scrape_once(tmp_path_factory.mktemp("daemon")))
    return exposed_names(text)
