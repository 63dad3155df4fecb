from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.envelope import Attachment, Envelope, Sender, decode, encode, envelope_id
from router.envelope_docs import DEFAULT_OUTPUT, generate
from router.errors import EnvelopeError

text = st.text(max_size=40)
aware = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30))]
    ),
)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)

attachments = st.builds(
    Attachment,
    name=text,
    content_type=st.sampled_from(["image/png", "application/pdf"]),
    size=st.integers(0, 2**40),
    sha256=st.text("0123456789abcdef", min_size=64, max_size=64),
    ref=text.map(lambda s: "blob://" + s),
)

envelopes = st.builds(
    Envelope,
    id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(["message", "reply", "call", "command", "timer"]),
    direction=st.sampled_from(["in", "out"]),
    channel=st.text(min_size=1, max_size=20),
    channel_type=st.sampled_from(["email", "telegram", "webchat", "phone"]),
    thread_key=st.text(min_size=1, max_size=40),
    conversation_id=st.none() | text,
    sender=st.builds(
        Sender,
        address=text,
        name=st.none() | text,
        role=st.sampled_from(["customer", "agent", "system"]),
    ),
    sent_at=st.none() | aware,
    received_at=aware,
    subject=st.none() | text,
    text=text,
    html=st.none() | text,
    attachments=st.lists(attachments, max_size=3),
    meta=st.dictionaries(text, json_values, max_size=4),
)


def sample(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "v": 1,
        "id": "abc",
        "kind": "message",
        "direction": "in",
        "channel": "support-email",
        "channel_type": "email",
        "thread_key": "<root@x>",
        "conversation_id": None,
        "sender": {"address": "ana@example.com", "name": "Ana Pérez", "role": "customer"},
        "sent_at": "2026-11-23T10:00:00+01:00",
        "received_at": "2026-11-23T09:00:01Z",
        "subject": "Order 42",
        "text": "Where is it?",
        "html": None,
        "attachments": [],
        "meta": {"message_id": "<m1@x>"},
    }
    base.update(over)
    return base


@given(envelopes)
def test_encode_decode_round_trips(env: Envelope) -> None:
    assert decode(encode(env)) == env


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_envelope_error(data: bytes) -> None:
    try:
        decode(data)
    except EnvelopeError:
        pass


@given(st.dictionaries(text, json_values, max_size=8))
def test_arbitrary_objects_raise_only_envelope_error(obj: dict[str, object]) -> None:
    obj.setdefault("v", 1)
    try:
        decode(orjson.dumps(obj))
    except EnvelopeError:
        pass


def test_valid_sample_decodes() -> None:
    env = decode(orjson.dumps(sample()))
    assert env.sender.name == "Ana Pérez"
    assert env.sent_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"v": 2}, "v"),
        ({"kind": "fax"}, "kind"),
        ({"channel": 7}, "channel"),
        ({"received_at": "yesterday"}, "received_at"),
        ({"received_at": "2026-11-23T09:00:01"}, "received_at"),  # no timezone
        ({"surprise": True}, "surprise"),
        ({"sender": {"address": "a@b", "role": "robot"}}, "sender.role"),
        (
            {
                "attachments": [
                    {
                        "name": "x",
                        "content_type": "a/b",
                        "size": -1,
                        "sha256": "0" * 64,
                        "ref": "blob://x",
                    }
                ]
            },
            "attachments.0.size",
        ),
    ],
)
def test_invalid_fields_are_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(EnvelopeError, match=field.replace(".", r"\.")):
        decode(orjson.dumps(sample(**change)))


def test_missing_field_is_named() -> None:
    obj = sample()
    del obj["thread_key"]
    with pytest.raises(EnvelopeError, match="thread_key"):
        decode(orjson.dumps(obj))


def test_ids_are_stable_and_channel_scoped() -> None:
    assert envelope_id("support-email", "<m1@x>") == envelope_id("support-email", "<m1@x>")
    assert envelope_id("support-email", "<m1@x>") != envelope_id("sales-email", "<m1@x>")
    assert envelope_id("a", "b\x00c") != envelope_id("a\x00b", "c")


def test_bus_key_separates_threads() -> None:
    a = decode(orjson.dumps(sample(thread_key="t1")))
    b = decode(orjson.dumps(sample(thread_key="t2")))
    assert a.bus_key() != b.bus_key()


def test_encoding_invalid_text_is_an_envelope_error() -> None:
    env = decode(orjson.dumps(sample())).model_copy(update={"text": "bad \udc80 byte"})
    with pytest.raises(EnvelopeError, match="cannot encode envelope abc"):
        encode(env)


def test_typed_parts_round_trip_and_default_to_empty() -> None:
    old = decode(orjson.dumps(sample()))  # a record written before the typed parts
    assert (old.automated, old.identities, old.reply_context) == (None, [], {})
    assert (old.delivery, old.command) == (None, None)
    env = decode(
        orjson.dumps(
            sample(
                automated={"auto": True, "bounce": {"envelope_id": "e1", "recipients": []}},
                identities=[{"kind": "phone", "value": "+34600112233"}],
                reply_context={"message_id": "<m1@x>", "references": ["<r@x>"]},
                command={"name": "transfer", "args": ["billing"]},
            )
        )
    )
    assert env.automated is not None and env.automated.bounce is not None
    assert env.automated.bounce.envelope_id == "e1"
    assert env.reply_context == {"message_id": "<m1@x>", "references": ["<r@x>"]}
    assert decode(encode(env)) == env


def test_command_and_delivery_in_meta_are_lifted_into_their_parts() -> None:
    delivery = {"event": "assigned", "agent": {"id": "ana"}, "sink": {"type": "email"}}
    env = decode(
        orjson.dumps(
            sample(meta={"command": {"name": "resolve", "args": []}, "delivery": delivery, "x": 1})
        )
    )
    assert env.command is not None and env.command.name == "resolve"
    assert env.delivery is not None and env.delivery.agent.id == "ana"
    assert env.meta == {"x": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reply_context": {"ids": ["<m@x>"] * 600}}, "reply_context"),  # over 4096 bytes
        ({"identities": [{"kind": "phone"}]}, "identities.0.value"),
        ({"automated": {"auto": "yes"}}, "automated.auto"),
        ({"command": {"name": "x", "args": [1]}}, "command.args.0"),
        ({"delivery": {"event": "assigned", "agent": {"id": "a"}}}, "delivery.sink"),
    ],
)
def test_typed_parts_are_checked(change: dict[str, object], field: str) -> None:
    with pytest.raises(EnvelopeError, match=field.replace(".", r"\.")):
        decode(orjson.dumps(sample(**change)))


def test_committed_envelope_reference_is_up_to_date() -> None:
    committed = (Path(__file__).parents[2] / DEFAULT_OUTPUT).read_text(encoding="utf-8")
    assert committed == generate(), (
        "docs/envelope.md is out of date: run python -m router.envelope_docs"
    )


def test_automated_flags_an_earlier_intake_wrote_in_meta_are_lifted() -> None:
    legacy = {"auto": True, "is_auto_reply": True, "auto_reasons": ["x-autoreply"], "size": 9}
    env = decode(orjson.dumps(sample(meta=legacy)))
    assert env.automated is not None
    assert (env.automated.auto, env.automated.auto_reply) == (True, True)
    assert env.automated.reasons == ["x-autoreply"] and env.automated.bounce is None
    bounce = decode(orjson.dumps(sample(meta={"auto": True, "is_bounce": True})))
    assert bounce.automated is not None and bounce.automated.bounce is not None
    assert bounce.automated.bounce.envelope_id is None  # recorded, never matched
    person = decode(orjson.dumps(sample(meta={"auto": False, "is_bounce": False})))
    assert person.automated is None
