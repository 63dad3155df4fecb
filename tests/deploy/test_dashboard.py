"""deploy/grafana/omnirouter.json: every query reads metrics a running daemon exposes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.harness.metrics import queried_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "omnirouter.json"


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows' panels included."""
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))

    walk(dashboard["panels"])
    return found


def test_every_metric_the_dashboard_queries_exists(daemon_metrics: set[str]) -> None:
    missing = {
        (title, name)
        for title, expr in queries()
        for name in queried_names(expr)
        if name not in daemon_metrics
    }
    assert missing == set()


def test_every_query_reads_a_metric() -> None:
    assert [(title, expr) for title, expr in queries() if not queried_names(expr)] == []


def test_the_dashboard_shows_the_floor_and_the_daemon() -> None:
    used = {name for _, expr in queries() for name in queried_names(expr)}
    assert used >= {
        "omnirouter_queue_depth",
        "omnirouter_queue_oldest_wait_seconds",
        "omnirouter_agents",
        "omnirouter_sla_warnings_total",
        "omnirouter_sla_breaches_total",
        "omnirouter_incidents_total",
        "omnirouter_outbox_depth",
        "omnirouter_dead_letters_total",
        "omnirouter_consumer_lag_records",
        "omnirouter_connector_up",
        "omnirouter_connector_down",
        "omnirouter_routing_duration_seconds_bucket",
    }
