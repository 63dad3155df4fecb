"""`omnirouter staffing` on a generated day whose answer is known (router/staffing/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from router.cli import main
from router.config import load_config
from router.simulate import Simulation
from router.staffing import run_staffing
from router.store import open_store

DAY = Path(__file__).with_name("day.yaml")


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "a-test-secret-of-16+chars")


def chats(hour: int, n: int, tag: str) -> list[dict[str, Any]]:
    """`n` chats spread over an hour of Monday 2 March 2026, Madrid time."""
    lines = []
    for i in range(n):
        sec = i * 3600 // n
        at = f"2026-03-02T{hour:02d}:{sec // 60:02d}:{sec % 60:02d}+01:00"
        lines.append({"at": at, "channel": "chat", "from": f"{tag}{i}", "thread": f"{tag}{i}"})
    return lines


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def hours(out: str) -> dict[str, dict[str, Any]]:
    rows = [orjson.loads(line) for line in out.splitlines()]
    return {r["hour"][11:16]: r for r in rows if r["type"] == "hour"}


def test_a_day_with_a_known_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 10:00: 40 chats of 30 minutes are 20 erlangs; answered at once 85% of the time they
    # need 26 slots (the published Erlang C example), 13 agents of 2 chats; 4 are on shift.
    # 15:00: 2 chats, 1 erlang: 3 slots (C = 0.09; 2 slots give 0.33), 2 agents: covered.
    # 20:00: 1 chat, 0.5 erlang: 2 slots (C = 0.10), 1 agent, and nobody on shift.
    events = write(
        tmp_path / "day.jsonl", chats(10, 40, "a") + chats(15, 2, "b") + chats(20, 1, "c")
    )
    args = ["staffing", "-c", str(DAY), str(events), "--handle-time", "chat=30m"]
    args += ["--target", "0s", "--service-level", "0.85", "--format", "json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    inputs = orjson.loads(out.splitlines()[0])
    assert inputs == {
        "type": "inputs",
        "model": "erlang_c",
        "channel": "chat",
        "channel_type": "webchat",
        "handle_seconds": 1800.0,
        "handle_source": "given",
        "target_seconds": 0.0,
        "share": 0.85,
        "slots_per_agent": 2,
    }
    by_hour = hours(out)
    assert len(by_hour) == 24
    ten, three, eight = by_hour["10:00"], by_hour["15:00"], by_hour["20:00"]
    assert (ten["arrivals"], ten["erlangs"], ten["slots_needed"]) == (40, 20.0, 26)
    assert (ten["agents_needed"], ten["agents_scheduled"], ten["short"]) == (13, 4, True)
    assert (three["slots_needed"], three["agents_needed"], three["short"]) == (3, 2, False)
    assert (eight["slots_needed"], eight["agents_scheduled"], eight["short"]) == (2, 0, True)
    assert by_hour["12:00"]["slots_needed"] == 0 and not by_hour["12:00"]["short"]


def test_the_table_says_the_model_the_inputs_and_where_it_falls_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = write(tmp_path / "day.jsonl", chats(10, 40, "a"))
    args = ["staffing", "-c", str(DAY), str(events), "--handle-time", "chat=30m"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Erlang C")
    assert "chat (webchat): handling 30.0m given, target 80% within 30s, 2 slots per agent" in out
    [ten] = [line for line in out.splitlines() if line.startswith("2026-03-02 10:00")]
    assert "SHORT" in ten
    assert out.rstrip().endswith("1 hour(s) where the schedules fall short")


def test_handling_time_is_measured_from_the_assignments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Chats at 10:00 and 10:30, resolved 6 and 10 minutes after they were taken: 8 minutes.
    first, second = chats(10, 2, "a")
    resolve = {"agent": "ana", "command": "resolve"}
    events = [
        first,
        {**resolve, "at": "2026-03-02T10:06:00+01:00", "conversation": "chat/a0"},
        second,
        {**resolve, "at": "2026-03-02T10:40:00+01:00", "conversation": "chat/a1"},
    ]
    path = write(tmp_path / "day.jsonl", events)
    assert main(["staffing", "-c", str(DAY), str(path), "--format", "json"]) == 0
    inputs = orjson.loads(capsys.readouterr().out.splitlines()[0])
    assert inputs["handle_source"] == "measured (2)"
    assert inputs["handle_seconds"] == pytest.approx((6 * 60 + 10 * 60) / 2)


def test_without_a_measure_or_a_given_handling_time_it_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "day.jsonl", chats(10, 2, "a"))
    assert main(["staffing", "-c", str(DAY), str(path)]) == 2
    assert "give one with --handle-time chat=5m" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--timezone", "Mars/Olympus"], "not a time zone"),
        (["--handle-time", "chat"], "expected CHANNEL=DURATION"),
        (["--target", "soon"], "expected a duration"),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    path = write(tmp_path / "day.jsonl", chats(10, 1, "a"))
    assert main(["staffing", "-c", str(DAY), str(path), *extra]) == 2
    assert says in capsys.readouterr().err


async def test_the_store_s_latest_day_is_read_when_no_events_are_given(tmp_path: Path) -> None:
    config = load_config(DAY)
    store = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        sim = Simulation(config, store)
        await sim.start(None)
        for number, event in enumerate(chats(9, 3, "old"), 1):
            await sim.step(number, {**event, "at": event["at"].replace("03-02", "03-01")})
        for number, event in enumerate(chats(11, 4, "new"), 10):
            await sim.step(number, event)
        out = _Out()
        await run_staffing(config, out, store=store, handle_given={"chat": 600.0}, fmt="json")
    finally:
        await store.close()
    rows = [orjson.loads(line) for line in out.text.splitlines()]
    busy = {r["hour"]: r["arrivals"] for r in rows if r["type"] == "hour" and r["arrivals"]}
    assert busy == {"2026-03-02T11:00:00+01:00": 4}  # the latest day only


class _Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)
