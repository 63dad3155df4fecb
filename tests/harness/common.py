"""What every real-service harness shares: CI detection, free ports, and the CI rule.

The rule: under CI=true a test that needs a real service (markers `kafka`,
`postgres`, `imap`) and was skipped counts as failed, whatever skipped it, so a
missing service can never make CI green by running less.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from collections.abc import Awaitable, Callable, Generator

import pytest

REAL_SERVICES = {"kafka": "Kafka", "postgres": "PostgreSQL", "imap": "Dovecot IMAP"}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], seconds: float = 10.0, *, every: float = 0.02
) -> None:
    """Wait until `check()` (plain or async) holds; fail the test after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(every)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not in_ci() or not report.skipped or hasattr(report, "wasxfail"):
        return report
    for marker, service in REAL_SERVICES.items():
        if item.get_closest_marker(marker) is not None:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid}: a {marker} test was skipped under CI ({report.longrepr!r});"
                f" CI must run it against a real {service}"
            )
            break
    return report
