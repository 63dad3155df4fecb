"""A daemon's /metrics, as Prometheus reads it: scraped from a daemon running in this process
(embedded bus, SQLite store, one in-memory channel), and the metric names it exposes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from router.config import parse_config
from router.connector import load_registry
from router.connector.testing import MEMORY_TYPE, memory_spec
from router.daemon import Daemon
from tests.harness.daemon import embedded_config, get, running

# Queues, the complaint skill (so complaints are detected), one channel, no agents: what
# a customer writes waits in `general`, and misses its 2-second first-response target.
FLOOR = """
sla:
  first_response:
    memory: {normal: 2s, high: 2s}
skills:
  - name: complaints
queues:
  - name: general
  - name: vip
routing:
  default_queue: general
channels:
  - name: chat
    type: memory
"""


@asynccontextmanager
async def floor_daemon(tmp: Path, more: str = "") -> AsyncIterator[Daemon]:
    """The daemon on `FLOOR` (and `more` after it), running for the block."""
    registry = {**load_registry(), MEMORY_TYPE: memory_spec({})}
    config = parse_config(embedded_config(tmp) + FLOOR + more, registry=registry)
    async with running(config, registry=registry, watch_config=None) as daemon:
        yield daemon


async def scrape(daemon: Daemon) -> str:
    assert daemon.http is not None
    status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{daemon.http.port}/metrics")
    assert status == 200
    return body.decode()


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition offers a query: each family's samples (a histogram's
    `_bucket`, `_count` and `_sum`), and each family declared, even with no sample yet (a
    counter whose labels come with its first event)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


# A metric name in PromQL: ours, and the process and platform collectors'.
_METRIC = re.compile(r"\b(?:omnirouter|process|python)_[a-zA-Z0-9_]+\b")


def queried_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    return set(_METRIC.findall(expr))


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, or None when it is not there."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None
