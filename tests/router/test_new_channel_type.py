"""A channel type the core has never heard of works end to end by declaring itself.

Two test-only types, registered only here: `pigeon`, a customer channel, and
`semaphore`, a way to reach agents. Nothing in router/ names them: a customer's
message is routed, delivered to the agent on their semaphore sink, and the agent's
reply goes back out on the customer's pigeon channel with the reply context the
pigeon intake wrote, unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from router.config import ConfigError, parse_config
from router.connector import ConnectorSpec, Services, load_registry
from router.connector.testing import MemoryConnector
from router.envelope import Envelope, Sender, StatedIdentity, envelope_id
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def flag_address(value: str) -> str:
    if not value.lower().startswith("flag-"):
        raise ValueError("a semaphore address starts with flag-")
    return value.strip().lower()


def pigeon_id(value: str) -> str:
    if not value.isalnum():
        raise ValueError("a pigeon ring is letters and digits")
    return value.upper()


class Registry:
    def __init__(self) -> None:
        self.built: dict[str, MemoryConnector] = {}
        common: dict[str, Any] = {"config": NoSettings, "factory": self.build}
        self.specs = {
            **load_registry(),
            "pigeon": ConnectorSpec(
                type="pigeon",
                description="customers write by carrier pigeon",
                customer_channel=True,
                default_capacity=2,
                default_targets={"normal": timedelta(minutes=10)},
                identity_kind="ring",
                normalize_identity=pigeon_id,
                **common,
            ),
            "semaphore": ConnectorSpec(
                type="semaphore",
                description="agents read flags",
                customer_channel=False,
                agent_sink=True,
                sink_address=flag_address,
                sink_accepts=True,
                **common,
            ),
        }

    def build(self, name: str, settings: NoSettings, services: Services) -> MemoryConnector:
        # A channel in memory: what is offered is taken in, what is sent is kept in `sent`.
        self.built[name] = MemoryConnector(name, services=services)
        return self.built[name]


CONFIG = """
channels:
  - {name: loft, type: pigeon, pigeon: {}}
  - {name: tower, type: semaphore, semaphore: {}}
agents:
  - id: ana
    name: Ana
    sink: {type: semaphore, channel: tower, address: FLAG-Ana}
"""


async def test_a_new_customer_type_and_sink_type_work_end_to_end(tmp_path: Path) -> None:
    reg = Registry()
    config = parse_config(embedded_config(tmp_path) + CONFIG, registry=reg.specs)
    assert config.agents[0].sink.address == "flag-ana"  # the type's own check normalized it
    sent_at = datetime.now(UTC)
    async with running(config, registry=reg.specs):
        loft, tower = reg.built["loft"], reg.built["tower"]
        loft.offer(
            Envelope(
                id=envelope_id("loft", "coo-1"),
                kind="message",
                direction="in",
                channel="loft",
                channel_type="pigeon",
                thread_key="nest-7",
                sender=Sender(address="r42", name="Eva"),
                received_at=sent_at,
                text="my parcel never came",
                identities=[StatedIdentity(kind="email", value="eva@example.net")],
                reply_context={"perch": "north", "leg": "left"},
            )
        )
        await eventually(lambda: bool(tower.sent), 10)
        [delivered] = tower.sent
        delivery = delivered.delivery
        assert delivery is not None and delivery.event == "assigned"
        assert (delivery.agent.id, delivery.sink.type, delivery.sink.address) == (
            "ana",
            "semaphore",
            "flag-ana",
        )
        # The type's declared response-time target sets the SLA.
        assert delivery.sla_due is not None
        assert timedelta(minutes=9) < delivery.sla_due - sent_at < timedelta(minutes=11)
        customer = delivery.context["customer"]
        assert {(i["kind"], i["value"]) for i in customer["identities"]} == {
            ("ring", "R42"),  # the sender, as the type's identity kind, normalized by it
            ("email", "eva@example.net"),  # what the intake said the customer stated
        }
        assert delivery.token
        # The agent answers through their tool: back in on the sink's channel.
        tower.offer(
            Envelope(
                id=envelope_id("tower", "wave-1"),
                kind="reply",
                direction="in",
                channel="tower",
                channel_type="semaphore",
                thread_key=delivered.thread_key,
                sender=Sender(address="FLAG-ANA", role="agent"),
                received_at=datetime.now(UTC),
                text="It flies to you today.",
                meta={"token": delivery.token},
            )
        )
        await eventually(lambda: any(e.kind == "reply" for e in loft.sent), 10)
        [answer] = [e for e in loft.sent if e.kind == "reply"]
        assert (answer.channel, answer.thread_key) == ("loft", "nest-7")
        assert answer.text == "It flies to you today."
        assert answer.sender.role == "agent" and answer.sender.address == "ana"
        assert answer.reply_context == {"perch": "north", "leg": "left"}  # unchanged


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("{type: carrier, channel: tower}", "unknown sink type 'carrier'; types that reach"),
        # a customer-only type is no way to reach an agent
        ("{type: pigeon, channel: loft}", "unknown sink type 'pigeon'; types that reach"),
        ("{type: semaphore, channel: tower, address: ana}", "starts with flag-"),
        ("{type: semaphore, channel: tower}", "a semaphore sink needs address"),
    ],
)
def test_sinks_are_checked_by_what_their_type_declares(sink: str, message: str) -> None:
    text = CONFIG.replace("{type: semaphore, channel: tower, address: FLAG-Ana}", sink)
    with pytest.raises(ConfigError) as info:
        parse_config("version: 1\n" + text, registry=Registry().specs)
    assert message in str(info.value)
    if "types that reach" in message:
        assert "semaphore" in str(info.value) and "webhook" in str(info.value)
