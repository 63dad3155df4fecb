"""deploy/prometheus/alerts.yaml: valid for Prometheus (promtool), each rule reads metrics a
running daemon exposes, and says what happened."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.metrics import queried_names

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yaml"
PROMTOOL_TESTS = Path(__file__).with_name("alerts.promtool.yaml")
# Prometheus' own series, per target (the daemon does not expose it).
PROMETHEUS_OWN = {"up"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool() -> str:
    """promtool's path: CI must have it (.ci/system-deps installs it); elsewhere the test
    is skipped, saying how to get it."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: .ci/system-deps installs it (Debian's prometheus)")
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    return path


def run_promtool(*args: str) -> None:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_rules() -> None:
    run_promtool("check", "rules", str(RULES))


def test_each_alert_fires_on_its_series_and_not_before() -> None:
    run_promtool("test", "rules", str(PROMTOOL_TESTS))


def test_every_metric_a_rule_reads_exists(daemon_metrics: set[str]) -> None:
    missing = {
        (rule["alert"], name)
        for rule in rules()
        for name in queried_names(rule["expr"])
        if name not in daemon_metrics
    }
    assert missing == set()
    reads_nothing = [
        rule["alert"]
        for rule in rules()
        if not queried_names(rule["expr"]) and _name(rule["expr"]) not in PROMETHEUS_OWN
    ]
    assert reads_nothing == []


def _name(expr: str) -> str:
    return expr.split("{", 1)[0].strip()


def test_each_alert_says_what_happened_and_has_a_runbook_line() -> None:
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for rule in rules():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"### {rule['alert']}" in runbook, rule["alert"]


def test_the_operators_alerts_are_there() -> None:
    assert {rule["alert"] for rule in rules()} >= {
        "OmnirouterSlaBreaches",
        "OmnirouterQueueWaitOverTarget",
        "OmnirouterChannelDown",
        "OmnirouterDeadLettersGrowing",
        "OmnirouterConsumerLag",
    }
