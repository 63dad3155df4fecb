"""The events file `simulate` reads: one JSON object a line, checked before anything runs.

Lines that are blank or start with `#` are skipped (comments). Every other line
is one of these forms; a key that its form does not know is an error naming the
line and the key, so a typo (`"form"` for `"from"`) never passes unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from router.errors import OmniError

# Keys each form reads (besides "at", which any line may carry).
CUSTOMER_KEYS = frozenset(
    {
        "channel",
        "from",
        "name",
        "thread",
        "subject",
        "text",
        "id",
        "message_id",
        "kind",
        "meta",
        # The envelope's typed parts, as the channel's intake would write them.
        "automated",
        "identities",
        "reply_context",
    }
)
AGENT_KEYS = frozenset({"agent", "command", "args", "reply", "conversation", "token", "from", "id"})


class SimulationError(OmniError):
    """A line of the events file (or the customers file) is not something simulate understands."""


def read_events(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) for each event line; raises `SimulationError` at the first bad one."""
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SimulationError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise SimulationError(f"line {number}: expected a JSON object")
        check_event(number, obj)
        yield number, obj


def check_event(number: int, obj: dict[str, Any]) -> None:
    if "at" in obj:
        when(obj["at"], number)
    if "v" in obj:
        return  # a full envelope: `decode` checks it, strictly, when its turn comes
    keys = set(obj) - {"at"}
    if not keys:
        return  # a clock step
    if "agent" in obj:
        _unknown(number, keys, AGENT_KEYS, "an agent line")
        if ("reply" in obj) == ("command" in obj):
            raise SimulationError(f"line {number}: an agent line has 'reply' or 'command'")
        if not isinstance(obj.get("args", []), list):
            raise SimulationError(f"line {number}: args: expected a list")
        return
    _unknown(number, keys, CUSTOMER_KEYS, "a customer line")
    for key in ("channel", "from"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise SimulationError(f"line {number}: a customer line needs {key!r} (a string)")
    if obj.get("kind", "message") not in ("message", "call"):
        raise SimulationError(f"line {number}: kind: expected 'message' or 'call'")
    for key in ("meta", "reply_context"):
        if not isinstance(obj.get(key, {}), dict):
            raise SimulationError(f"line {number}: {key}: expected an object")


def _unknown(number: int, keys: set[str], known: frozenset[str], form: str) -> None:
    unknown = sorted(keys - known)
    if unknown:
        raise SimulationError(
            f"line {number}: unknown key {unknown[0]!r} in {form}"
            f" (known: at, {', '.join(sorted(known))})"
        )


def when(value: Any, number: int) -> datetime:
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SimulationError(f"line {number}: at: {exc}") from exc
    if at.tzinfo is None:
        raise SimulationError(f"line {number}: at: give a time zone (e.g. Z or +01:00)")
    return at.astimezone(UTC)
