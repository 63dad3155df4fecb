"""The connector's sources merged into one intake, and what a bad CDR line becomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import orjson

from router.connector import DONE, Incoming, Rejected
from router.envelope import envelope_id
from tests.connectors.phone.helpers import (
    CHANNEL,
    cdr_line,
    listening,
    phone_config,
    post,
    signed,
    write_lines,
)
from tests.connectors.phone.test_inbound import from_line
from tests.connectors.phone.test_routes import EVENT, PATH

Items = AsyncIterator[Incoming | Rejected]


async def test_the_file_and_the_webhook_arrive_through_one_intake(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    write_lines(master, [cdr_line(uniqueid="1741597200.1")])
    cfg = phone_config(cdr={"path": master, "poll_interval": timedelta(milliseconds=10)})
    async with listening(tmp_path, cfg) as line:
        items: Items = line.connector.receive()
        try:
            first = await asyncio.wait_for(anext(items), 5)
            assert isinstance(first, Incoming)
            assert first.envelope.id == envelope_id(CHANNEL, "1741597200.1")
            await first.ack(DONE)
            body = orjson.dumps(EVENT)
            posting = asyncio.create_task(post(line.url(PATH), body, signed(body)))
            second = await asyncio.wait_for(anext(items), 5)
            assert isinstance(second, Incoming)
            assert second.envelope.id == envelope_id(CHANNEL, "pbx-778")
            await second.ack(DONE)
            assert (await asyncio.wait_for(posting, 5))[0] == 202
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_a_bad_cdr_line_is_rejected_with_where_and_why(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    write_lines(master, [cdr_line(disposition="LOST"), cdr_line(uniqueid="1741597200.2")])
    cfg = phone_config(
        webhook_path=None, cdr={"path": master, "poll_interval": timedelta(milliseconds=10)}
    )
    async with listening(tmp_path, cfg) as line:
        items: Items = line.connector.receive()
        try:
            bad = await asyncio.wait_for(anext(items), 5)
            assert isinstance(bad, Rejected)
            assert (bad.native_id, bad.reason) == (
                "Master.csv@0",
                "CDR line: disposition: unknown 'LOST'",
            )
            await bad.ack(DONE)
            good = await asyncio.wait_for(anext(items), 5)
            assert isinstance(good, Incoming)
        finally:
            await items.aclose()  # type: ignore[attr-defined]


async def test_a_phone_channel_sends_nothing(tmp_path: Path) -> None:
    async with listening(tmp_path) as line:
        result = await line.connector.send(
            from_line(cdr_line()).model_copy(update={"direction": "out"})
        )
        assert (result.status, result.detail) == ("failed", "a phone channel sends nothing")
