"""The builders of agents' replies and commands: one shape for every agent-facing channel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from router.connector.agents import MAX_ARGS, AgentInput, BadCommand, command_of
from router.envelope import AGENT_COMMANDS, Command, envelope_id

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "0123456789abcdef0123456789abcdef.abcdefghijklmnopqrstuvwx"


def source(token: str | None = TOKEN, **kw: Any) -> AgentInput:
    return AgentInput(
        channel="hooks", channel_type="webhook", agent="ana", token=token, received_at=NOW, **kw
    )


def test_a_reply() -> None:
    env = source(meta={"event_id": "e1"}).reply("e1", "Hi")
    assert env.id == envelope_id("hooks", "e1")
    assert (env.kind, env.direction, env.channel_type) == ("reply", "in", "webhook")
    assert env.sender.address == "ana" and env.sender.role == "agent"
    assert env.thread_key == TOKEN.partition(".")[0]
    assert env.meta == {"event_id": "e1", "token": TOKEN}


@pytest.mark.parametrize("token", [None, "", "no-dot"])
def test_without_a_conversation_the_thread_is_the_agent(token: str | None) -> None:
    env = source(token).reply("e1", "Hi")
    assert env.thread_key == "agent:ana"
    assert env.meta["token"] == (token or None)


def test_channel_meta_cannot_set_another_token_or_command() -> None:
    env = source(meta={"token": "x.y", "command": {"name": "resolve"}}).command("e2", "away")
    assert env.meta["token"] == TOKEN
    assert env.command == Command(name="away", args=[])
    assert "command" not in env.meta


def test_a_command() -> None:
    env = source().command("e2", " Transfer ", ["billing"])
    assert env.kind == "command" and env.id == envelope_id("hooks", "e2")
    assert env.command == Command(name="transfer", args=["billing"])
    assert env.text == "transfer billing"
    assert env.attachments == []
    assert source().command("e3", "note", ["x"], text="#note x").text == "#note x"


@pytest.mark.parametrize(
    ("name", "args", "reason"),
    [
        ("fly", [], "command: unknown 'fly'"),
        ("#resolve", [], "command: unknown"),
        ("x" * 500, [], "command: unknown"),
        ("resolve", [1], "args: must be a list of strings"),
        ("note", ["w"] * (MAX_ARGS + 1), f"args: at most {MAX_ARGS}"),
    ],
)
def test_bad_commands_name_the_field(name: str, args: list[Any], reason: str) -> None:
    with pytest.raises(BadCommand, match=reason):
        command_of(name, args)
    with pytest.raises(BadCommand, match=reason):
        source().command("e", name, args)


def test_an_unknown_but_well_formed_name_may_be_passed_on_for_the_router_to_answer() -> None:
    assert command_of("reslove", [], pass_unknown=True) == Command(name="reslove", args=[])
    with pytest.raises(BadCommand):
        command_of("not a name", [], pass_unknown=True)


def test_every_agent_command_is_taken() -> None:
    for name in AGENT_COMMANDS:
        assert command_of(name, []).name == name
