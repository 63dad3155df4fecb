"""Who sent an agent's envelope: by sink address, or by id on the agent's webhook channel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from router.bus.base import Topics
from router.config import parse_config
from router.envelope import Envelope, Sender
from router.routing.context import Routing

CONFIG = """\
version: 1
channels:
  - {name: mail, type: email, enabled: false, email: {imap: {host: i, username: u,
     password: "${P}"}, smtp: {host: s, from_address: support@shop.example}}}
  - {name: tg, type: telegram, enabled: false, telegram: {bot_token: "${T}"}}
  - {name: hooks, type: webhook, enabled: false, webhook: {secret: "${S}"}}
  - {name: other-hooks, type: webhook, enabled: false, webhook: {secret: "${S}"}}
agents:
  - {id: ana, name: Ana, sink: {type: email, channel: mail, address: Ana@Corp.example}}
  - {id: ben, name: Ben, sink: {type: telegram, channel: tg, address: "4242"}}
  - {id: chloe, name: Chloe, sink: {type: webhook, channel: hooks, url: "https://h/c"}}
"""


@pytest.fixture(scope="module")
def routing() -> Routing:
    return Routing(parse_config(CONFIG, env={}), store=None, topics=Topics(prefix="omni."))  # type: ignore[arg-type]


def env(channel: str, channel_type: str, address: str) -> Envelope:
    return Envelope(
        id="e1",
        kind="reply",
        direction="in",
        channel=channel,
        channel_type=channel_type,
        thread_key="t",
        sender=Sender(address=address, role="agent"),
        received_at=datetime(2025, 3, 3, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("mail", "email", "ana@corp.example"), "ana"),  # addresses compare case-insensitively
        (("tg", "telegram", "4242"), "ben"),
        (("hooks", "webhook", "chloe"), "chloe"),
        # a webhook channel that is not her sink does not speak for her
        (("other-hooks", "webhook", "chloe"), None),
        # on a webhook channel only webhook agents, by id; nobody by address
        (("hooks", "webhook", "ana"), None),
        (("hooks", "webhook", "ana@corp.example"), None),
        (("hooks", "webhook", "Chloe"), None),
        # an agent id is no address on the other channels
        (("mail", "email", "chloe"), None),
        (("tg", "telegram", "chloe"), None),
    ],
)
def test_agent_of(routing: Routing, args: Any, expected: str | None) -> None:
    assert routing.agent_of(env(*args)) == expected


def test_defaults_come_from_the_types_and_the_config_overrides_each_type() -> None:
    text = (
        CONFIG
        + """\
routing: {default_capacity: {email: 4}}
sla: {first_response: {telegram: {normal: 2h}}}
"""
    )
    ctx = Routing(parse_config(text, env={}), store=None, topics=Topics(prefix="omni."))  # type: ignore[arg-type]
    # the config's value for email; every other customer type its connector's
    assert ctx.default_capacity == {"email": 4, "telegram": 5, "webchat": 3, "phone": 1}
    assert ctx.targets["telegram"].normal.total_seconds() == 7200
    assert ctx.targets["telegram"].urgent is None  # the config's table replaces the type's
    assert ctx.targets["email"].normal.total_seconds() == 24 * 3600
    assert "webhook" not in ctx.targets  # agents only: no customer conversations there


def test_the_phone_region_is_read_from_the_channel_block_as_its_type_says() -> None:
    text = CONFIG.replace(
        "agents:",
        '  - {name: calls, type: phone, enabled: false, phone: {hmac_secret: "${H}",'
        " default_region: ES}}\nagents:",
    )
    ctx = Routing(parse_config(text, env={}), store=None, topics=Topics(prefix="omni."))  # type: ignore[arg-type]
    assert ctx.default_region("calls") == "ES"
    assert ctx.default_region("mail") is None  # a type that declares no region
    call = env("calls", "phone", "600 11 22 33").model_copy(update={"kind": "call"})
    assert str(ctx.sender_identity(call)) == "phone:+34600112233"
