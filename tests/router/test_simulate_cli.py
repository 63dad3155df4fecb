"""`omnirouter simulate` as ops use it: a config, a file of events, JSON lines out."""

import subprocess
import sys
from pathlib import Path

import orjson

from tests.harness.daemon import ROOT

CONFIG = ROOT / "tests" / "router" / "routing" / "scenario.yaml"


def simulate(events: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    path = tmp / "events.jsonl"
    path.write_text(events)
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "simulate", "-c", str(CONFIG), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp,
    )


def test_simulate_prints_one_decision_per_line(tmp_path: Path) -> None:
    result = simulate(
        '{"at": "2026-03-02T10:00:00Z", "channel": "mail", "from": "eva@shop.test",'
        ' "thread": "t1", "text": "my invoice is wrong"}\n'
        "# a comment line\n"
        '{"agent": "ana", "reply": "Fixed!", "conversation": "mail/t1"}\n',
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    decisions = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [d["action"] for d in decisions] == ["classify", "ack", "assign", "reply_out"]
    assert decisions[2]["agent"] == "ana"
    assert decisions[2]["reason"]["rule"] == "best_available"
    assert {"input", "conversation_id", "action", "agent", "queue", "priority", "reason"} == set(
        decisions[0]
    )


def test_simulate_reports_bad_lines(tmp_path: Path) -> None:
    result = simulate('{"channel": "fax", "from": "x"}\n', tmp_path)
    assert result.returncode == 2
    assert "line 1: unknown channel 'fax'" in result.stderr
    result = simulate("not json\n", tmp_path)
    assert result.returncode == 2 and "line 1: not JSON" in result.stderr


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
    result = simulate(orjson.dumps(envelope).decode() + "\n", tmp_path)
    assert result.returncode == 0, result.stderr
    [decision] = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert decision["action"] == "dead_letter"
    assert decision["reason"] == {"detail": "channel 'no-such-channel' is not configured"}
