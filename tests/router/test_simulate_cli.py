"""`omnirouter simulate` as ops use it: a config, a file of events, a report out."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.harness.daemon import ROOT

CONFIG = ROOT / "tests" / "router" / "routing" / "scenario.yaml"
INVOICE = (
    '{"at": "2026-03-02T10:00:00Z", "channel": "mail", "from": "eva@shop.test",'
    ' "name": "Eva", "thread": "t1", "text": "my invoice is wrong",'
    ' "reply_context": {"to": ["eva@shop.test"]}}\n'
)


def simulate(events: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp / "events.jsonl"
    path.write_text(events)
    options = list(args) if "--compare" in args else ["-c", str(CONFIG), *args]
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "simulate", *options, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
        # This tree's router, whatever is installed.
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def config_variant(tmp: Path, name: str, change: Any) -> Path:
    """scenario.yaml changed by `change(data)`, written to `tmp/name`."""
    data = yaml.safe_load(CONFIG.read_text())
    change(data)
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_simulate_prints_decisions_then_outputs_in_json_lines(tmp_path: Path) -> None:
    out = lines(
        simulate(
            INVOICE + "# a comment line\n"
            '{"agent": "ana", "reply": "Fixed!", "conversation": "mail/t1"}\n',
            tmp_path,
        )
    )
    decisions = [d for d in out if "type" not in d]
    assert [d["action"] for d in decisions] == ["classify", "ack", "assign", "reply_out"]
    assert decisions[2]["agent"] == "ana"
    assert decisions[2]["reason"]["rule"] == "best_available"
    assert {"input", "conversation_id", "action", "agent", "queue", "priority", "reason"} == set(
        decisions[0]
    )
    outputs = [d for d in out if d.get("type") == "output"]
    assert [(o["output"], o.get("purpose") or o.get("event")) for o in outputs] == [
        ("customer_message", "ack"),
        ("delivery", "assigned"),
        ("customer_message", "reply"),
    ]
    ack, delivery, reply = outputs
    assert (ack["channel"], ack["thread"]) == ("mail", "t1")
    assert ack["reply_context"] == {"to": ["eva@shop.test"]}  # the intake's, handed back
    assert "within 1 hour" in ack["text"]
    assert delivery["agent"] == "ana"
    assert delivery["sla_due"] == "2026-03-02T11:00:00+00:00"
    assert delivery["context"]["identities"] == ["email eva@shop.test"]
    assert delivery["context"]["customer"] == "Eva"
    assert (reply["agent"], reply["text"]) == ("ana", "Fixed!")
    [summary] = [d for d in out if d.get("type") == "summary"]
    assert summary["channel"] == "mail" and summary["answered"] == 1


def test_simulate_shows_incidents_and_supervisor_notices_in_both_formats(tmp_path: Path) -> None:
    # Ana (the only billing agent, and supervisor) is away: the invoice waits, the
    # SLA warning tells the customer and the supervisor, the breach is an incident.
    events = (
        '{"at": "2026-03-02T09:00:00Z", "agent": "ana", "command": "away"}\n'
        + INVOICE.replace("my invoice", "this is unacceptable, my invoice")
        + '{"at": "2026-03-02T12:00:00Z"}\n'
    )
    out = lines(simulate(events, tmp_path))
    outputs = [
        (o["output"], o.get("kind") or o.get("purpose") or o.get("event"))
        for o in out
        if o.get("type") == "output"
    ]
    assert ("incident", "complaint") in outputs
    assert ("customer_message", "on_it") in outputs
    assert ("supervisor_notice", "escalation") in outputs
    assert ("incident", "sla_breach") in outputs
    breach = next(o for o in out if o.get("kind") == "sla_breach")
    assert breach["at"] == "2026-03-02T10:30:00+00:00"  # a complaint: high, 30 minutes
    [summary] = [d for d in out if d.get("type") == "summary"]
    assert summary["incidents"] == 2 and summary["within_target"] == 0.0

    table = simulate(events, tmp_path, "--format", "table")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "incident    sla_breach: first-response target missed" in text
    assert "supervisor  ana (escalation" in text
    assert "| We are on it, Eva." in text
    assert "2026-03-02 10:30:00  mail/t1" in text
    assert "within target" in text and "0%" in text


def test_the_same_run_twice_is_byte_identical(tmp_path: Path) -> None:
    events = (
        INVOICE
        + '{"at": "2026-03-02T10:01:00Z", "channel": "tg", "from": "777", "text": "app crash"}\n'
        + '{"at": "2026-03-02T10:05:00Z", "agent": "ana", "command": "resolve",'
        ' "conversation": "mail/t1"}\n' + '{"at": "2026-03-02T13:00:00Z"}\n'
    )
    for fmt in ("json", "table"):
        first = simulate(events, tmp_path, "--format", fmt)
        second = simulate(events, tmp_path, "--format", fmt)
        assert first.returncode == 0, first.stderr
        assert first.stdout == second.stdout
    assert '"output":"customer_message"' in first.stdout or "followup" in first.stdout


def test_a_run_that_starts_an_answer_thread_is_byte_identical_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat visitor answered by email too: the router starts an email thread for them,
    whose key must come from simulate's seeded draw, not a random one."""

    def answered_by_email(data: dict[str, Any]) -> None:
        mail, _, chat = data["channels"]
        mail["enabled"] = True  # what sends the answers
        chat["webchat"]["answer_by_email"] = "mail"

    monkeypatch.setenv("P", "mailbox-password")
    config = config_variant(tmp_path, "answer-by-email.yaml", answered_by_email)
    visitor = {
        "v": 1,
        "id": "m1",
        "kind": "message",
        "direction": "in",
        "channel": "chat",
        "channel_type": "webchat",
        "thread_key": "sess1",
        "sender": {"address": "vis-1", "role": "customer", "name": "Eva"},
        "received_at": "2026-03-02T10:00:00Z",
        "text": "Hello, where is my order?",
        "answer_at": {"kind": "email", "value": "eva@shop.test"},
    }
    reply = {"agent": "ana", "reply": "It ships today.", "conversation": "chat/sess1"}
    events = orjson.dumps(visitor).decode() + "\n" + orjson.dumps(reply).decode() + "\n"
    first = simulate(events, tmp_path, "-c", str(config))
    second = simulate(events, tmp_path, "-c", str(config))
    assert "omni.thread." in first.stdout, first.stderr  # the thread was started
    assert first.stdout == second.stdout


def test_compare_shows_changed_assignments_and_figures(tmp_path: Path) -> None:
    def no_billing_for_ana(data: Any) -> None:
        data["agents"][0]["skills"].pop("billing")

    new = config_variant(tmp_path, "new.yaml", no_billing_for_ana)
    events = INVOICE + (
        '{"at": "2026-03-02T10:05:00Z", "agent": "ben", "reply": "Fixed!",'
        ' "conversation": "mail/t1"}\n'
    )
    out = lines(simulate(events, tmp_path, "--compare", str(CONFIG), str(new)))
    assert {"type": "assignment", "conversation": "mail/t1", "old": ["ana"], "new": ["ben"]} in out
    [mail] = [d for d in out if d["type"] == "summary"]
    # Ben's reply counts only where the conversation is his.
    assert mail["old"]["first_response_p50_s"] is None
    assert mail["new"]["first_response_p50_s"] == 300.0
    assert (mail["old"]["unanswered"], mail["new"]["unanswered"]) == (1, 0)

    table = simulate(events, tmp_path, "--compare", str(CONFIG), str(new), "--format", "table")
    assert table.returncode == 0, table.stderr
    assert "mail/t1: ana -> ben" in table.stdout
    assert "first response p50" in table.stdout and "- -> 5m 00s" in table.stdout


def test_a_shift_between_two_events_is_acted_on_at_its_minute(tmp_path: Path) -> None:
    def ben_works_early(data: Any) -> None:
        data["business_hours"] = {"early": {"timezone": "UTC", "weekly": {"mon": ["03:10-03:40"]}}}
        data["agents"][1]["schedule"] = "early"

    config = config_variant(tmp_path, "early.yaml", ben_works_early)
    events = (
        '{"at": "2026-03-02T02:00:00Z", "channel": "mail", "from": "gus@shop.test",'
        ' "thread": "g1", "text": "the app shows an error"}\n'
        '{"at": "2026-03-02T06:00:00Z"}\n'
    )
    out = lines(simulate(events, tmp_path, "-c", str(config)))
    [delivery] = [o for o in out if o.get("output") == "delivery"]
    assert (delivery["agent"], delivery["at"]) == ("ben", "2026-03-02T03:10:00+00:00")
    shift = next(d for d in out if d.get("action") == "shift_start")
    assert shift["reason"] == {"agents": ["ben"]}


def test_known_customers_are_recognised(tmp_path: Path) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("name,tier,email,telegram\nEva Known,gold,eva@shop.test,777\n")
    events = '{"at": "2026-03-02T10:00:00Z", "channel": "tg", "from": "777", "text": "app crash"}\n'
    known = lines(simulate(events, tmp_path, "--customers", str(customers)))
    [delivery] = [o for o in known if o.get("output") == "delivery"]
    assert delivery["context"]["customer"] == "Eva Known"
    assert delivery["context"]["tier"] == "gold"
    assert "email eva@shop.test" in delivery["context"]["identities"]

    unknown = lines(simulate(events, tmp_path))
    [delivery] = [o for o in unknown if o.get("output") == "delivery"]
    assert delivery["context"]["identities"] == ["telegram 777"]


def test_customers_national_numbers_read_in_the_phone_channel_s_region(tmp_path: Path) -> None:
    # As `import-customers` reads the same file: the phone channel's `default_region`.
    phone = {"default_region": "ES", "webhook_path": None}
    config = config_variant(
        tmp_path,
        "with-phone.yaml",
        lambda data: data["channels"].append(
            {"name": "line", "type": "phone", "enabled": False, "phone": phone}
        ),
    )
    customers = tmp_path / "customers.csv"
    customers.write_text("name,tier,email,phone\nEva Known,gold,eva@shop.test,612 345 678\n")
    result = simulate(INVOICE, tmp_path, "-c", str(config), "--customers", str(customers))
    [delivery] = [o for o in lines(result) if o.get("output") == "delivery"]
    assert delivery["context"]["customer"] == "Eva Known"
    assert "phone +34612345678" in delivery["context"]["identities"]


def test_simulate_reports_bad_lines(tmp_path: Path) -> None:
    result = simulate('{"channel": "fax", "from": "x"}\n', tmp_path)
    assert result.returncode == 2
    assert "line 1: unknown channel 'fax'" in result.stderr
    result = simulate("not json\n", tmp_path)
    assert result.returncode == 2 and "line 1: not JSON" in result.stderr
    result = simulate('# first\n{"channel": "mail", "form": "eva@shop.test"}\n', tmp_path)
    assert result.returncode == 2
    assert "line 2: unknown key 'form' in a customer line" in result.stderr
    result = simulate('{"agent": "ana", "reply": "hi", "conversaton": "mail/t1"}\n', tmp_path)
    assert result.returncode == 2
    assert "line 1: unknown key 'conversaton' in an agent line" in result.stderr
    assert result.stdout == ""  # checked before anything runs


def test_simulate_shows_a_raw_envelope_the_daemon_would_dead_letter(tmp_path: Path) -> None:
    envelope = {
        "v": 1,
        "id": "e1",
        "kind": "message",
        "direction": "in",
        "channel": "no-such-channel",
        "channel_type": "email",
        "thread_key": "t1",
        "sender": {"address": "eva@shop.test", "role": "customer"},
    }
    [decision] = lines(simulate(orjson.dumps(envelope).decode() + "\n", tmp_path))
    assert decision["action"] == "dead_letter"
    assert decision["reason"] == {"detail": "channel 'no-such-channel' is not configured"}


def test_help_names_every_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0
    for option in ("--config", "--compare OLD NEW", "--format {json,table}", "--customers FILE"):
        assert option in result.stdout
