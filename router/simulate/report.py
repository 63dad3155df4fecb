"""Printing a simulation: JSON lines for tools, a readable timeline (`table`) for people.

JSON lines: a decision keeps the shape the log and earlier versions print
(input, conversation_id, action, agent, queue, priority, reason; no `type`);
every other line has a `type`: `output` (with `output`: customer_message,
delivery, supervisor_notice or incident), `summary` (one per channel, last),
and with `--compare`, `assignment` (a conversation whose agents change) and
`summary` with `old` and `new` figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from router.simulate.figures import ChannelFigures, Comparison
from router.simulate.outputs import Entry, Output

FIGURES = (
    ("conversations", "conversations"),
    ("answered", "answered"),
    ("first_response_p50_s", "first response p50"),
    ("first_response_p95_s", "first response p95"),
    ("within_target", "within target"),
    ("waiting_for_agent", "waiting for an agent"),
    ("unanswered", "unanswered"),
    ("incidents", "incidents"),
    ("first_contact_resolution", "first-contact resolution"),
)


def _json(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def json_lines(timeline: Sequence[Entry], figures: Sequence[ChannelFigures]) -> Iterator[str]:
    for e in timeline:
        yield _json(e.item.as_json(e.at) if isinstance(e.item, Output) else e.item.as_json())
    for f in figures:
        yield _json(f.as_json())


def json_compare(comparison: Comparison) -> Iterator[str]:
    for line in comparison.as_json():
        yield _json(line)


def table(timeline: Sequence[Entry], figures: Sequence[ChannelFigures]) -> Iterator[str]:
    width = max([len(e.conversation or "-") for e in timeline] + [12])
    yield f"{'TIME (UTC)':<19}  {'CONVERSATION':<{width}}  {'WHAT':<10}  DETAIL"
    for e in timeline:
        head = f"{e.at:%Y-%m-%d %H:%M:%S}  {e.conversation or '-':<{width}}  "
        item = e.item
        if isinstance(item, Output):
            what, detail, text = _output(item)
        else:
            what, text = "decision", ""
            detail = " ".join(
                p
                for p in (
                    item.action,
                    f"agent {item.agent}" if item.agent else "",
                    f"queue {item.queue}" if item.queue else "",
                    f"priority {item.priority}" if item.priority else "",
                    f"({_pairs(item.reason)})" if item.reason else "",
                )
                if p
            )
        yield f"{head}{what:<10}  {detail}"
        for line in text.splitlines():
            yield f"{'':<{21 + width + 2}}{'':<10}  | {line}"
    yield ""
    yield from figures_table(figures)


def _output(o: Output) -> tuple[str, str, str]:
    f = o.fields
    if o.output == "customer_message":
        by = f" from {f['agent']}" if f.get("agent") else ""
        where = f"{f['purpose']}{by} on {f['channel']}, thread {f['thread']}"
        if f.get("standing"):
            where += f"; standing {_pairs(f['standing'])}"
        return "customer", where, f["text"]
    if o.output == "incident":
        return "incident", f"{f['kind']}: {f['cause']}", ""
    c = f["context"]
    who = "supervisor" if o.output == "supervisor_notice" else "agent"
    parts = [
        f"{f['agent']} ({f['event']}, via {f['sink']})",
        f"#{c['ref']} {c['customer'] or '(no name)'} [{', '.join(c['identities'])}]",
        f"{c['messages']} message(s)",
    ]
    if c["other_conversations"]:
        parts.append("also " + ", ".join(c["other_conversations"]))
    if f.get("sla_due"):
        parts.append(f"due {f['sla_due']}")
    if f.get("reason"):
        parts.append(f"why: {_pairs(f['reason'])}")
    return who, "; ".join(parts), f.get("note") or ""


def _pairs(reason: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v if isinstance(v, str) else _json(v)}" for k, v in reason.items() if v is not None
    )


def _value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("within_target", "first_contact_resolution"):
        return f"{value:.0%}"
    if key.endswith("_s"):
        return duration(value)
    return str(value)


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def figures_table(figures: Sequence[ChannelFigures]) -> Iterator[str]:
    if not figures:
        yield "no conversations"
        return
    names = [f.channel for f in figures]
    width = max(len(n) for n in [*names, "figure"])
    yield f"{'PER CHANNEL':<22}" + "".join(f"  {n:>{width}}" for n in names)
    for key, label in FIGURES:
        values = [_value(key, getattr(f, key)) for f in figures]
        yield f"{label:<22}" + "".join(f"  {v:>{width}}" for v in values)


def compare_table(c: Comparison) -> Iterator[str]:
    yield "WHO GETS WHAT (conversations whose agents change: old -> new)"
    if not c.assignments:
        yield "  no change"
    for conv, was, now in c.assignments:
        yield f"  {conv}: {', '.join(was) or 'nobody'} -> {', '.join(now) or 'nobody'}"
    yield ""
    yield "FIGURES PER CHANNEL (old -> new)"
    for channel, old, new in c.figures:
        yield f"  {channel}"
        for key, label in FIGURES:
            before = _value(key, getattr(old, key)) if old else "-"
            after = _value(key, getattr(new, key)) if new else "-"
            mark = "" if before == after else "   *"
            yield f"    {label:<22}  {before:>9} -> {after:<9}{mark}"
