"""Events from an agent's tool: the signature checked (every way a request is refused), and
turned into envelopes (every shape error names its field)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from connectors.webhook.errors import BadEvent, BadSignature
from connectors.webhook.inbound import to_envelope, verify
from connectors.webhook.outbound import signature
from router.envelope import Command, decode, encode, envelope_id

NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
TOKEN = "conv-42.abcdefghijklmnopqrstuvwx"


def body(**fields: Any) -> bytes:
    event = {"id": "ev-1", "agent": "chloe", "token": TOKEN, "type": "reply", "text": "Hello"}
    event.update(fields)
    return orjson.dumps({k: v for k, v in event.items() if v is not ...})


def test_reply() -> None:
    env = to_envelope(body(), "agent-hooks", NOW)
    assert env.id == envelope_id("agent-hooks", "ev-1")
    assert (env.kind, env.direction, env.channel, env.channel_type) == (
        "reply",
        "in",
        "agent-hooks",
        "webhook",
    )
    assert env.thread_key == "conv-42"  # the token's conversation: its events stay in order
    assert env.sender.address == "chloe" and env.sender.role == "agent"
    assert env.text == "Hello"
    assert env.meta == {"token": TOKEN, "event_id": "ev-1"}
    assert env.received_at == NOW
    assert decode(encode(env)) == env  # a valid envelope, as the bus carries it


def test_command_with_args() -> None:
    env = to_envelope(
        body(type="command", command="Transfer", args=["billing", "needs", "refund"], text=...),
        "agent-hooks",
        NOW,
    )
    assert env.kind == "command"
    assert env.command == Command(name="transfer", args=["billing", "needs", "refund"])
    assert env.meta["token"] == TOKEN
    assert env.text == "transfer billing needs refund"


def test_promise_and_kept_are_commands() -> None:
    args = ["17:00", "call back with the refund status"]
    env = to_envelope(body(type="command", command="promise", args=args, text=...), "h", NOW)
    assert env.command == Command(name="promise", args=args)
    assert env.thread_key == "conv-42" and env.meta["token"] == TOKEN
    env = to_envelope(body(type="command", command="kept", args=["7"], text=...), "h", NOW)
    assert env.command == Command(name="kept", args=["7"])
    assert decode(encode(env)) == env


def test_presence_needs_no_token() -> None:
    env = to_envelope(body(type="command", command="away", token=..., text=...), "agent-hooks", NOW)
    assert env.meta == {"token": None, "event_id": "ev-1"}
    assert env.command == Command(name="away")
    assert env.thread_key == "agent:chloe"


@pytest.mark.parametrize("kind", ["typing", "seen"])
def test_typing_and_seen_are_the_router_s_signal_commands(kind: str) -> None:
    env = to_envelope(body(type=kind, text=...), "agent-hooks", NOW)
    assert env.kind == "command" and env.command == Command(name=kind)
    assert env.thread_key == "conv-42"  # in order with the agent's replies
    assert env.meta == {"token": TOKEN, "event_id": "ev-1"}
    assert decode(encode(env)) == env


def test_same_event_same_id_other_channel_other_id() -> None:
    a = to_envelope(body(), "agent-hooks", NOW)
    b = to_envelope(body(text="Hello again"), "agent-hooks", NOW)
    c = to_envelope(body(), "other-hooks", NOW)
    assert a.id == b.id != c.id


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"[1, 2]", "body: expected a JSON object, got list"),
        (body(id=...), "id: required"),
        (body(id=7), "id: must be a string"),
        (body(id="  "), "id: must not be empty"),
        (body(id="x" * 201), "id: at most 200 characters"),
        (body(agent=...), "agent: required"),
        (body(agent="Chloe Martin"), "agent: not an agent id"),
        (body(type=...), 'type: must be "reply", "command", "typing", "seen"'),
        (body(type="message"), 'type: must be "reply", "command", "typing", "seen"'),
        (body(type="typing", text=..., token=...), "token: required"),
        (body(type="seen", text=..., token=""), "token: required"),
        (body(type="typing"), 'text: not with type "typing"'),
        (body(type="seen", text=..., command="seen"), 'command: not with type "seen"'),
        (body(token=...), "token: required"),
        (body(token=12), "token: must be a string"),
        (body(text=...), "text: required"),
        (body(text=""), "text: must not be empty"),
        (body(command="resolve"), 'command: only with type "command"'),
        (body(type="command", command=...), "command: required"),
        (body(type="command", command="explode"), "command: unknown 'explode'"),
        (body(type="command", command="delivery_failed"), "command: unknown"),
        (body(type="command", command="note", args="x"), "args: must be a list of strings"),
        (body(type="command", command="note", args=[1]), "args: must be a list of strings"),
        (body(type="command", command="note", args=["a"] * 51), "args: at most 50"),
        (body(type="command", command="resolve", token=...), "token: required"),
        (body(txt="typo"), "txt: unknown field"),
        (body(v=2), "v: unsupported version 2"),
    ],
)
def test_shape_errors_name_the_field(raw: bytes, message: str) -> None:
    with pytest.raises(BadEvent) as info:
        to_envelope(raw, "agent-hooks", NOW)
    assert str(info.value).startswith(message), str(info.value)


# --- the signature --------------------------------------------------------------------

KEY = b"0123456789abcdef-key"
BODY = b'{"id":"e1","agent":"ana","type":"reply","text":"hi","token":"c.x"}'
SIGNED_AT = 1_760_000_000


def test_good_signature_verifies() -> None:
    verify(
        KEY, str(SIGNED_AT), signature(KEY, SIGNED_AT, BODY), BODY, now=SIGNED_AT + 30, max_skew=300
    )


@pytest.mark.parametrize(
    ("timestamp", "signed", "body", "now", "reason"),
    [
        (
            str(SIGNED_AT),
            signature(b"another-key-entirely", SIGNED_AT, BODY),
            BODY,
            SIGNED_AT,
            "does not match",
        ),
        (
            str(SIGNED_AT),
            signature(KEY, SIGNED_AT, BODY),
            BODY.replace(b"hi", b"ho"),
            SIGNED_AT,
            "does not match",
        ),
        # the timestamp is part of what is signed: moving it breaks the signature
        (str(SIGNED_AT + 1), signature(KEY, SIGNED_AT, BODY), BODY, SIGNED_AT, "does not match"),
        (str(SIGNED_AT), "v1=" + "0" * 64, BODY, SIGNED_AT, "does not match"),
        (
            str(SIGNED_AT),
            signature(KEY, SIGNED_AT, BODY)[3:],
            BODY,
            SIGNED_AT,
            "does not match",
        ),  # no v1=
        (str(SIGNED_AT), "v1=ünicode", BODY, SIGNED_AT, "does not match"),
        (
            str(SIGNED_AT - 301),
            signature(KEY, SIGNED_AT - 301, BODY),
            BODY,
            SIGNED_AT,
            "clock skew",
        ),
        (
            str(SIGNED_AT + 301),
            signature(KEY, SIGNED_AT + 301, BODY),
            BODY,
            SIGNED_AT,
            "clock skew",
        ),
        ("yesterday", signature(KEY, SIGNED_AT, BODY), BODY, SIGNED_AT, "Unix seconds"),
        ("-5", signature(KEY, SIGNED_AT, BODY), BODY, SIGNED_AT, "Unix seconds"),
        (None, signature(KEY, SIGNED_AT, BODY), BODY, SIGNED_AT, "missing X-Omnirouter-Timestamp"),
        (str(SIGNED_AT), None, BODY, SIGNED_AT, "missing X-Omnirouter-Signature"),
        (str(SIGNED_AT), "", BODY, SIGNED_AT, "missing X-Omnirouter-Signature"),
    ],
)
def test_signature_refused(
    timestamp: str | None, signed: str | None, body: bytes, now: int, reason: str
) -> None:
    with pytest.raises(BadSignature, match=reason):
        verify(KEY, timestamp, signed, body, now=now, max_skew=300)
