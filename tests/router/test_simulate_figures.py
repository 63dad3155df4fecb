"""simulate's closing figures and its comparison of two runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from router.routing.context import Decision
from router.simulate.events import SimulationError, check_event
from router.simulate.figures import ChannelFigures, compare, percentile, who_gets_what
from router.simulate.outputs import Entry, Output
from router.simulate.report import duration

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([30.0], 0.95) == 30.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.95) == 19.0
    assert percentile(list(reversed(values)), 0.95) == 19.0


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0, 59.6, 300, 3599, 3600, 5400)] == [
        "0s",
        "1m 00s",
        "5m 00s",
        "59m 59s",
        "1h 00m",
        "1h 30m",
    ]


def delivery(conv: str, agent: str, output: str = "delivery") -> Entry:
    item = Output(output=output, input="i", conversation_id="c", fields={"agent": agent})
    return Entry(at=T, item=item, conversation=conv)


def figures(channel: str, p50: float | None) -> ChannelFigures:
    return ChannelFigures(
        channel=channel,
        conversations=1,
        answered=int(p50 is not None),
        first_response_p50_s=p50,
        first_response_p95_s=p50,
        within_target=None,
        waiting_for_agent=0,
        unanswered=int(p50 is None),
        incidents=0,
    )


def test_compare_lists_only_conversations_whose_agents_change() -> None:
    decision = Entry(
        at=T, item=Decision(input="i", action="assign", agent="ana"), conversation="m/1"
    )
    old = [
        decision,
        delivery("m/1", "ana"),
        delivery("m/2", "ben"),
        delivery("m/1", "sup", "supervisor_notice"),
    ]
    new = [delivery("m/1", "ben"), delivery("m/2", "ben"), delivery("m/1", "ana")]
    assert who_gets_what(old) == {"m/1": ["ana"], "m/2": ["ben"]}
    result = compare((old, [figures("m", 60.0)]), (new, [figures("m", None), figures("t", 5.0)]))
    assert result.assignments == [("m/1", ["ana"], ["ben", "ana"])]
    assert [(c, o is not None, n is not None) for c, o, n in result.figures] == [
        ("m", True, True),
        ("t", False, True),
    ]
    summary = result.as_json()[-1]
    assert summary["type"] == "summary" and summary["channel"] == "t" and summary["old"] is None


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"channel": "mail", "from": "a", "txt": "hi"},
            "line 7: unknown key 'txt' in a customer line",
        ),
        ({"agent": "ana", "reply": "x", "command": "resolve"}, "has 'reply' or 'command'"),
        ({"agent": "ana", "command": "transfer", "args": "billing"}, "args: expected a list"),
        ({"channel": "mail", "text": "hi"}, "needs 'from'"),
        ({"channel": "mail", "from": "a", "kind": "fax"}, "kind: expected"),
        ({"at": "2026-03-02T10:00:00"}, "give a time zone"),
    ],
)
def test_event_lines_are_checked_before_they_run(event: dict[str, object], error: str) -> None:
    with pytest.raises(SimulationError, match=error):
        check_event(7, event)


def test_known_forms_pass() -> None:
    for event in (
        {"at": "2026-03-02T10:00:00Z"},
        {"channel": "mail", "from": "a", "message_id": "<m1>", "meta": {"x": 1}, "kind": "call"},
        {"agent": "ana", "command": "note", "args": ["hi"], "conversation": "mail/t1"},
        {"v": 1, "anything": "decode checks it"},
    ):
        check_event(1, event)
