"""The call-event webhook and Twilio's callbacks, through real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from connectors.phone.connector import PhoneConnector, twilio_signature
from router.config.secrets import SecretRef
from router.connector import Incoming, Outcome, Rejected
from router.envelope import envelope_id
from tests.connectors.phone.helpers import CHANNEL, listening, phone_config, post, signed

EVENT = {
    "call_id": "pbx-778",
    "from": "600112233",
    "to": "+34910000000",
    "direction": "inbound",
    "started_at": "2026-03-10T10:00:00+01:00",
    "ended_at": "2026-03-10T10:00:35+01:00",
    "disposition": "missed",
}
PATH = "/phone/cdr"


async def next_item(connector: PhoneConnector) -> Incoming | Rejected:
    items: AsyncIterator[Incoming | Rejected] = connector.receive()
    return await asyncio.wait_for(anext(items), 5)


def queued(connector: PhoneConnector) -> int:
    return sum(i.queued() for i in (connector.events, connector.callbacks) if i is not None)


async def test_a_signed_call_event_is_answered_once_on_the_bus(tmp_path: Path) -> None:
    async with listening(tmp_path) as line:
        body = orjson.dumps(EVENT)
        posting = asyncio.create_task(post(line.url(PATH), body, signed(body)))
        item = await next_item(line.connector)
        assert isinstance(item, Incoming)
        env = item.envelope
        assert env.id == envelope_id(CHANNEL, "pbx-778")
        assert env.call is not None and env.call.disposition == "missed"
        assert not posting.done()
        await item.ack(Outcome())
        assert await asyncio.wait_for(posting, 5) == (202, {"id": env.id})


def flipped(signature: str) -> str:
    """The signature with its first character changed (a fixed "0" is the same one time
    in sixteen)."""
    return ("1" if signature[0] == "0" else "0") + signature[1:]


async def test_bad_signatures_stale_times_and_replays_are_refused_with_nothing_queued(
    tmp_path: Path,
) -> None:
    async with listening(tmp_path) as line:
        body = orjson.dumps(EVENT)
        url = line.url(PATH)
        good = signed(body)
        cases: list[tuple[dict[str, str], str]] = [
            ({**good, "X-Omni-Signature": flipped(good["X-Omni-Signature"])}, "does not match"),
            (signed(body, key="another-key-0123456789"), "does not match"),
            (signed(body, at=time.time() - 3600), "outside the allowed clock skew"),
            ({"Content-Type": "application/json"}, "missing X-Omni-Timestamp"),
            ({k: v for k, v in good.items() if k != "X-Omni-Signature"}, "missing X-Omni-Sig"),
        ]
        for headers, reason in cases:
            status, answer = await post(url, body, headers)
            assert (status, reason in answer["error"]) == (401, True), answer
        assert queued(line.connector) == 0
        # Taken once; the very same signed bytes again are a replay.
        posting = asyncio.create_task(post(url, body, good))
        item = await next_item(line.connector)
        await item.ack(Outcome())
        assert (await posting)[0] == 202
        status, answer = await post(url, body, good)
        assert (status, answer["error"]) == (401, "request already received (replayed)")
        assert queued(line.connector) == 0


async def test_after_a_503_the_same_signed_bytes_may_come_again(tmp_path: Path) -> None:
    async with listening(tmp_path, ack_timeout=timedelta(seconds=0.2)) as line:
        body = orjson.dumps(EVENT)
        headers = signed(body)
        # Nobody takes it from the intake: not on the bus in time, 503.
        status, _ = await post(line.url(PATH), body, headers)
        assert status == 503
        posting = asyncio.create_task(post(line.url(PATH), body, headers))
        items = line.connector.receive()
        try:
            # The first (answered 503) is still queued; then the second.
            for _ in range(2):
                item = await asyncio.wait_for(anext(items), 5)
                await item.ack(Outcome())
        finally:
            await items.aclose()  # type: ignore[attr-defined]
        assert (await asyncio.wait_for(posting, 5))[0] == 202


async def test_a_bad_call_event_is_a_400_naming_the_field(tmp_path: Path) -> None:
    async with listening(tmp_path) as line:
        body = orjson.dumps({**EVENT, "disposition": "lost"})
        status, answer = await post(line.url(PATH), body, signed(body))
        assert (status, answer["error"]) == (400, "disposition: unknown 'lost'")
        body = orjson.dumps({**EVENT, "from": "anonymous"})
        status, answer = await post(line.url(PATH), body, signed(body))
        assert status == 400 and answer["error"].startswith("from: not a customer's number")
        assert queued(line.connector) == 0


# --- Twilio -------------------------------------------------------------------------------

TOKEN = "12345"
# Twilio's documented example, exactly as on their security page
# (https://www.twilio.com/docs/usage/security#validating-requests).
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def twilio_config(**kw: Any) -> Any:
    twilio = {
        "auth_token": SecretRef(TOKEN),
        "public_url": "https://mycompany.com/myapp.php",
        **kw,
    }
    return phone_config(twilio=twilio)


def form(params: dict[str, str], signature: str) -> tuple[bytes, dict[str, str]]:
    return urlencode(params).encode(), {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }


def test_twilio_documented_example_signature() -> None:
    assert twilio_signature(TOKEN, DOC_URL, list(DOC_PARAMS.items())) == DOC_SIGNATURE


async def test_twilio_documented_example_passes_the_signature_check(tmp_path: Path) -> None:
    async with listening(tmp_path, twilio_config()) as line:
        url = line.url("/phone/twilio?foo=1&bar=2")
        # Signed right: refused only for what it lacks to be a call's end (400, not 401).
        status, answer = await post(url, *form(DOC_PARAMS, DOC_SIGNATURE))
        assert (status, answer["error"]) == (
            400,
            "CallStatus: '' is not a call's end (subscribe to `completed` only)",
        )
        # One character changed: 401, nothing queued.
        status, answer = await post(url, *form(DOC_PARAMS, "X" + DOC_SIGNATURE[1:]))
        assert (status, answer["error"]) == (401, "signature does not match")
        tampered = {**DOC_PARAMS, "Digits": "1235"}
        status, _ = await post(url, *form(tampered, DOC_SIGNATURE))
        assert status == 401
        assert queued(line.connector) == 0


async def test_twilio_status_callback_becomes_a_call_after_ack(tmp_path: Path) -> None:
    async with listening(tmp_path, twilio_config()) as line:
        params = {**DOC_PARAMS, "CallStatus": "no-answer", "Direction": "inbound"}
        url = line.url("/phone/twilio?foo=1&bar=2")
        signature = twilio_signature(TOKEN, DOC_URL, list(params.items()))
        posting = asyncio.create_task(post(url, *form(params, signature)))
        item = await next_item(line.connector)
        assert isinstance(item, Incoming)
        assert item.envelope.id == envelope_id(CHANNEL, "CA1234567890ABCDE")
        assert item.envelope.thread_key == "+12349013030"
        await item.ack(Outcome())
        assert (await asyncio.wait_for(posting, 5))[0] == 200


async def test_twilio_without_a_public_url_signs_the_request_s_own_url(tmp_path: Path) -> None:
    async with listening(tmp_path, twilio_config(public_url=None)) as line:
        params = {**DOC_PARAMS, "CallStatus": "busy"}
        url = line.url("/phone/twilio")
        signature = twilio_signature(TOKEN, url, list(params.items()))
        posting = asyncio.create_task(post(url, *form(params, signature)))
        item = await next_item(line.connector)
        await item.ack(Outcome())
        assert (await asyncio.wait_for(posting, 5))[0] == 200


async def test_twilio_wants_a_form(tmp_path: Path) -> None:
    async with listening(tmp_path, twilio_config()) as line:
        status, _ = await post(
            line.url("/phone/twilio"), b"{}", {"Content-Type": "application/json"}
        )
        assert status == 415
