"""Events an agent's tool POSTs back: their signature checked, turned into `reply` and
`command` envelopes.

    {"id": "<tool's event id>", "agent": "<agent id>", "token": "<delivery token>",
     "type": "reply", "text": "..."}
    {"id": ..., "agent": ..., "token": ..., "type": "command",
     "command": "resolve", "args": ["..."]}
    {"id": ..., "agent": ..., "token": ..., "type": "typing"}   # or "seen"

`token` is the one from the delivery the event answers; the presence commands
(`available`, `away`, `offline`) need none. `typing` and `seen` are live signals
for the customer (the router's commands of those names): nothing but the token.
Unknown fields are refused, so a misspelt one never silently does nothing. Every
error names its field.

Events are signed as deliveries are (`outbound`). A replayed event needs no
refusal here: it carries its event id, so it gives the same envelope id and
the router drops the repeat.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from connectors.webhook.errors import BadEvent
from connectors.webhook.outbound import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from router.connector import signing
from router.connector.agents import AgentInput, BadCommand
from router.connector.signing import BadSignature
from router.envelope import Envelope

CHANNEL_TYPE = "webhook"
PRESENCE = frozenset({"available", "away", "offline"})
SIGNALS = ("typing", "seen")
TYPES = ("reply", "command", *SIGNALS)
FIELDS = frozenset({"v", "id", "agent", "token", "type", "text", "command", "args"})
MAX_ID_CHARS = 200
_AGENT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def verify(
    key: bytes,
    timestamp: str | None,
    signed: str | None,
    body: bytes,
    *,
    now: float,
    max_skew: float,
) -> None:
    """Raise `BadSignature` (with a short reason) unless the request is signed with `key`
    at a time within `max_skew` seconds of `now`."""
    if not timestamp:
        raise BadSignature(f"missing {TIMESTAMP_HEADER}")
    if not signed:
        raise BadSignature(f"missing {SIGNATURE_HEADER}")
    when = signing.check_timestamp(timestamp, now=now, max_skew=max_skew, name=TIMESTAMP_HEADER)
    signing.check(signature(key, when, body), signed)


def _string(obj: dict[str, Any], key: str, *, max_chars: int | None = None) -> str:
    value = obj.get(key)
    if value is None:
        raise BadEvent(f"{key}: required")
    if not isinstance(value, str):
        raise BadEvent(f"{key}: must be a string")
    if not value.strip():
        raise BadEvent(f"{key}: must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise BadEvent(f"{key}: at most {max_chars} characters")
    return value


def parse(body: bytes) -> dict[str, Any]:
    """The event as a JSON object with only documented fields, or `BadEvent`."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"body: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadEvent(f"body: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - FIELDS)
    if unknown:
        raise BadEvent(f"{unknown[0]}: unknown field; expected {', '.join(sorted(FIELDS))}")
    if obj.get("v", 1) != 1:
        raise BadEvent(f"v: unsupported version {obj['v']!r} (expected 1)")
    return obj


def to_envelope(body: bytes, channel: str, now: datetime) -> Envelope:
    """The envelope for one event POSTed on `channel`; raises `BadEvent` naming the field."""
    obj = parse(body)
    event_id = _string(obj, "id", max_chars=MAX_ID_CHARS)
    agent = _string(obj, "agent", max_chars=63)
    if not _AGENT.fullmatch(agent):
        raise BadEvent("agent: not an agent id (lowercase letters, digits, '-' and '_')")
    kind = obj.get("type")
    if kind not in TYPES:
        raise BadEvent("type: must be " + ", ".join(f'"{t}"' for t in TYPES))
    token = obj.get("token")
    if token is not None and not isinstance(token, str):
        raise BadEvent("token: must be a string")
    source = AgentInput(
        channel=channel,
        channel_type=CHANNEL_TYPE,
        agent=agent,
        token=token,
        received_at=now,
        meta={"event_id": event_id},
    )
    if kind in SIGNALS:
        for key in ("text", "command", "args"):
            if key in obj:
                raise BadEvent(f'{key}: not with type "{kind}"')
        if not token:
            raise BadEvent("token: required (the token of the delivery this is about)")
        return source.command(event_id, str(kind))
    if kind == "reply":
        for key in ("command", "args"):
            if key in obj:
                raise BadEvent(f'{key}: only with type "command"')
        text = _string(obj, "text")
        if not token:
            raise BadEvent("token: required (the token of the delivery this answers)")
        return source.reply(event_id, text)
    name = _string(obj, "command", max_chars=32)
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise BadEvent("args: must be a list of strings")
    given = obj.get("text")
    if given is not None and not isinstance(given, str):
        raise BadEvent("text: must be a string")
    try:
        envelope = source.command(event_id, name, args, text=given)
    except BadCommand as exc:
        raise BadEvent(str(exc)) from None
    if not token and (envelope.command is None or envelope.command.name not in PRESENCE):
        raise BadEvent("token: required (the token of the delivery this answers)")
    return envelope
