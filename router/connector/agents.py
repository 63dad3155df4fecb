"""Builders for what an agent-facing connector emits: an agent's `reply` and `command`.

Every agent-facing channel (webhook tools, agents' mailboxes, next a chat
client) sends the router the same two envelopes, built here so they agree
(`AgentInput(...).reply()` / `.command()`):

- `direction` `in`, `sender` = `{address: <agent as the channel knows them>,
  role: agent}`;
- `id` = `envelope_id(channel, native_id)`: the same native input (event id,
  Message-ID) always gives the same id, so the router drops a repeat;
- `thread_key` = the conversation the token names (one conversation's replies
  and commands stay in order on the bus), else `agent:<address>`;
- `meta.token` = the token, or None (the router then tells the agent);
  `command` = the typed part `{name, args}` on a command, `name` one of
  `router.envelope.AGENT_COMMANDS`.

Channel-native extras go in `meta` beside those.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from router.connector.tokens import conversation_of
from router.envelope import AGENT_COMMANDS, Attachment, Command, Envelope, Sender, envelope_id
from router.errors import ConnectorError

MAX_ARGS = 50
_NAME = re.compile(r"[a-z][a-z_-]{0,31}")


class BadCommand(ConnectorError):
    """A command the router would not take; the message starts with the field it names
    (`command:` or `args:`)."""

    retriable = False


def command_of(name: str, args: Sequence[object], *, pass_unknown: bool = False) -> Command:
    """The command part for `name` and `args`, or `BadCommand` naming the field.

    `pass_unknown`: a well-formed name the router does not know is passed on, for
    the router to reject and tell the agent (a channel that cannot answer the
    agent itself, such as mail, whose input is already taken).
    """
    name = name.strip().lower()
    if not _NAME.fullmatch(name) or (not pass_unknown and name not in AGENT_COMMANDS):
        raise BadCommand(
            f"command: unknown {name[:40]!r}; known: {', '.join(sorted(AGENT_COMMANDS))}"
        )
    if not all(isinstance(a, str) for a in args):
        raise BadCommand("args: must be a list of strings")
    if len(args) > MAX_ARGS:
        raise BadCommand(f"args: at most {MAX_ARGS}")
    return Command(name=name, args=[str(a) for a in args])


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentInput:
    """One input from an agent on `channel` (an event, a mail), as the channel has it;
    `reply()` and `command()` make its envelopes."""

    channel: str
    channel_type: str
    agent: str  # the agent as the channel knows them (id, address)
    token: str | None  # the token of the delivery it answers
    received_at: datetime
    name: str | None = None
    sent_at: datetime | None = None
    subject: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)  # channel-native extras

    def reply(
        self, native_id: str, text: str, *, attachments: Sequence[Attachment] = ()
    ) -> Envelope:
        """The agent's answer for the customer of the conversation the token names."""
        return self._envelope("reply", native_id, text, attachments, None)

    def command(
        self,
        native_id: str,
        name: str,
        args: Sequence[object] = (),
        *,
        text: str | None = None,
        pass_unknown: bool = False,
    ) -> Envelope:
        """The agent's command (`BadCommand` when not one, see `command_of`); `text` is
        what the agent wrote (default: the name and args), kept in the transcript."""
        command = command_of(name, args, pass_unknown=pass_unknown)
        text = text or " ".join([command.name, *command.args])
        return self._envelope("command", native_id, text, (), command)

    def _envelope(
        self,
        kind: Literal["reply", "command"],
        native_id: str,
        text: str,
        attachments: Sequence[Attachment],
        command: Command | None,
    ) -> Envelope:
        return Envelope(
            id=envelope_id(self.channel, native_id),
            kind=kind,
            direction="in",
            channel=self.channel,
            channel_type=self.channel_type,
            thread_key=conversation_of(self.token) or f"agent:{self.agent}",
            sender=Sender(address=self.agent, name=self.name, role="agent"),
            sent_at=self.sent_at,
            received_at=self.received_at,
            subject=self.subject,
            text=text,
            attachments=list(attachments),
            command=command,
            # a channel's extras never stand in for the typed command or the token
            meta={
                **{k: v for k, v in self.meta.items() if k != "command"},
                "token": self.token or None,
            },
        )
