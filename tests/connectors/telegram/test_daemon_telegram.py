"""A customer and an agent both on Telegram, through the real daemon and the embedded bus.

The customer writes to the bot → the acknowledgement comes back in the same chat
→ the agent's private chat with the bot gets the context card → the agent's
Accept on the card takes the assignment; the agent's Telegram reply to the card
reaches the customer's chat.
"""

from __future__ import annotations

from pathlib import Path

from router.config import parse_config
from router.connector import load_registry
from router.daemon import Daemon
from tests.harness.common import eventually
from tests.harness.daemon import embedded_config, running
from tests.harness.telegram import fake_bot_api, message, press

WAIT = 20.0
CUSTOMER, AGENT_USER = 42, 777


def decided(daemon: Daemon, action: str) -> float:
    value: float = daemon.metrics.decisions.labels(action=action)._value.get()
    return value


def config_text(tmp: Path, port: int) -> str:
    return (
        embedded_config(tmp)
        + f"""
channels:
  - name: tg
    type: telegram
    acknowledge: ack
    telegram:
      bot_token: "${{BOT_TOKEN}}"
      api_url: "http://127.0.0.1:{port}"
      polling: {{timeout: 1s}}
agents:
  - id: chloe
    name: Chloé Martin
    capacity: {{telegram: 3}}
    sink: {{type: telegram, channel: tg, address: "{AGENT_USER}"}}
routing:
  assignment_timeout: 1h
templates:
  ack:
    en: "We got your message and will answer {{expected_response}}."
"""
    )


async def test_customer_and_agent_on_telegram(tmp_path: Path) -> None:
    async with fake_bot_api() as api:
        registry = load_registry()
        cfg = parse_config(
            config_text(tmp_path, api.port), env={"BOT_TOKEN": api.token}, registry=registry
        )
        async with running(cfg, registry=registry, watch_config=None, ready_within=WAIT) as daemon:
            api.add_update(message(api, CUSTOMER, "My parcel never arrived"))
            # the acknowledgement, in the customer's chat
            await eventually(lambda: len(api.to(CUSTOMER)) >= 1, WAIT)
            # the card, in the agent's chat
            await eventually(lambda: len(api.to(AGENT_USER)) >= 1, WAIT)
            [card] = api.to(AGENT_USER)
            assert "My parcel never arrived" in card.text
            assert card.reply_markup is not None
            # Accept on the card takes the assignment (its timeout is cancelled)
            api.add_update(press(api, AGENT_USER, card.message_id, "accept"))
            await eventually(lambda: decided(daemon, "accept") == 1, WAIT)
            answered = {"message_id": card.message_id, "date": 0, "chat": {"id": AGENT_USER}}
            api.add_update(
                message(
                    api, AGENT_USER, "Found it: it arrives tomorrow.", reply_to_message=answered
                )
            )
            await eventually(
                lambda: any("arrives tomorrow" in s.text for s in api.to(CUSTOMER)), WAIT
            )
        acked, *_ = api.to(CUSTOMER)
        assert "We got your message" in acked.text


async def test_a_customer_who_blocked_the_bot_is_told_to_the_owner(tmp_path: Path) -> None:
    async with fake_bot_api() as api:
        registry = load_registry()
        cfg = parse_config(
            config_text(tmp_path, api.port), env={"BOT_TOKEN": api.token}, registry=registry
        )
        async with running(cfg, registry=registry, watch_config=None, ready_within=WAIT):
            api.add_update(message(api, CUSTOMER, "Hello?"))
            await eventually(lambda: len(api.to(AGENT_USER)) >= 1, WAIT)
            [card] = api.to(AGENT_USER)
            # the acknowledgement travels on its own topic: let it arrive first, so the
            # agent's reply is the one send the block refuses
            await eventually(lambda: len(api.to(CUSTOMER)) >= 1, WAIT)
            api.fail("sendMessage", "403", chat_id=CUSTOMER, times=100)  # blocked from now on
            answered = {"message_id": card.message_id, "date": 0, "chat": {"id": AGENT_USER}}
            api.add_update(message(api, AGENT_USER, "Here to help", reply_to_message=answered))
            # the owner hears of it in their chat; the send was tried once, not again
            await eventually(
                lambda: any("failed" in s.text.lower() for s in api.to(AGENT_USER)[1:]), WAIT
            )
        blocked = [r for r in api.refused if r[2] == str(CUSTOMER)]
        assert len(blocked) == 1
        # the conversation keeps it: the owner's notice says the customer is not reached
        told = next(s for s in api.to(AGENT_USER)[1:] if "failed" in s.text.lower())
        assert "not reached on tg since" in told.text and "blocked the bot" in told.text
