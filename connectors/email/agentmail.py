"""Agents who work from their mailbox: reply addresses, and their replies turned into envelopes.

Each notification to an agent carries, in its Reply-To, the agents' reply
address with the signed conversation token as a plus-address:
`support+<token>@example.com`. A token as the router issues it (`<32 hex>.<24
base32>`, `router.connector.tokens.ISSUED`) is written in 50 characters of
`a-z2-7` (the conversation id re-encoded in base32, then the signature): no
dot, nothing a mail server or client changes, case-insensitive, and short
enough for the 64-character limit on the part before the @. A token of
another shape is written with its dots as hyphens.

A mail is an agent's (`route()`):

- it came from the agents' folder (`agents.folder`), or
- one of its recipients (To, Cc, Delivered-To, X-Original-To, Envelope-To)
  is the reply address with a plus tag that decodes as a token, or with a
  plus tag longer than a customer conversation ref (32) — a damaged token, or
- the reply address is not the customer address (`smtp.from_address`) and a
  recipient is the reply address, with or without a tag.

Everything else is customer mail. An agent's mail becomes (`agent_envelopes()`):

- its new text: the body cut at the "reply above this line" marker our
  notifications start with, then quoted history and signature stripped;
- a leading `#command` line (`#resolve`, `#transfer billing check refund`,
  `#note ...`, `#away`) becomes a `command` envelope with `meta.command =
  {name, args}`; the rest of the text, if any, a `reply` envelope before it
  (so the customer has the answer before, say, the conversation is resolved).
  `#note` keeps the whole text as the note (it never reaches the customer);
  an unknown `#word` is passed on alone (the router rejects it and tells the
  agent) and the text is held back, since we cannot tell what was meant.
- `sender` = From, lowercased, role `agent`; `meta.token` = the token or
  null; the thread key is the token's conversation id, so an agent's replies
  and commands on one conversation stay in order.

The router authenticates both (the configured agent address and a token
issued to that agent) and answers anything else with a notice.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from connectors.email.config import EmailChannelConfig
from connectors.email.text import strip_quoted
from router.connector import tokens
from router.connector.agents import MAX_ARGS, AgentInput
from router.envelope import AGENT_COMMANDS as COMMANDS
from router.envelope import Envelope

REPLY_MARKER = "## Reply above this line to answer the customer ##"
MAX_CUSTOMER_REF = 32  # customer conversation refs are 4-32 characters (see `threads`)

_COMPACT = re.compile(r"^[a-z2-7]{50}$")
_OTHER_TOKEN = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)+$")
_COMMAND = re.compile(r"^#([A-Za-z][A-Za-z_-]{0,31})(?:[ \t]+(.*))?$")
_MARKER_WORDS = re.compile(r"reply above this line", re.I)


# --- the token in an address ------------------------------------------------------------


def encode_token(token: str) -> str:
    """The plus tag for `token`; `decode_token` gives it back. Raises ValueError."""
    token = token.lower()
    m = tokens.ISSUED.fullmatch(token)
    if m:
        conv = base64.b32encode(bytes.fromhex(m.group(1))).decode("ascii").rstrip("=").lower()
        return conv + m.group(2)
    if _OTHER_TOKEN.match(token):
        return token.replace(".", "-")
    raise ValueError("a conversation token must be letters and digits with dots")


def decode_token(tag: str) -> str | None:
    """The token written in a plus tag, or None when the tag is not one."""
    tag = tag.lower()
    if "-" in tag:
        token = tag.replace("-", ".")
        return token if _OTHER_TOKEN.match(token) else None
    if not _COMPACT.match(tag):
        return None
    try:
        conv = base64.b32decode(tag[:26].upper() + "======")
    except (binascii.Error, ValueError):
        return None
    token = f"{conv.hex()}.{tag[26:]}"
    return token if encode_token(token) == tag else None  # one spelling per token


def reply_to_address(reply_address: str, token: str) -> str:
    local, _, domain = reply_address.partition("@")
    return f"{local}+{encode_token(token)}@{domain}"


# --- which mail is an agent's -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    agent: bool
    token: str | None = None


def route(recipients: list[str], cfg: EmailChannelConfig, *, agents_folder: bool) -> Route:
    """Whether a mail sent to `recipients` is an agent's, and the token it was sent to."""
    local, _, domain = cfg.agent_reply_address.lower().partition("@")
    shared = cfg.agent_reply_address.lower() == cfg.smtp.from_address.lower()
    agent = agents_folder
    for address in recipients:
        a_local, _, a_domain = address.strip().lower().rpartition("@")
        base, plus, tag = a_local.partition("+")
        if a_domain != domain or base != local:
            continue
        token = decode_token(tag) if plus else None
        if token is not None:
            return Route(agent=True, token=token)
        if not shared or len(tag) > MAX_CUSTOMER_REF:
            agent = True
    return Route(agent=agent)


# --- what the agent wrote ---------------------------------------------------------------


def new_text(body: str) -> str:
    """What the agent wrote this time: cut at our marker, quoted history and signature gone."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if _MARKER_WORDS.search(line):
            lines = lines[:i]
            break
    return strip_quoted("\n".join(lines), keep_whole=False)


@dataclass(frozen=True, slots=True)
class Parsed:
    command: str | None
    args: list[str]
    command_line: str
    reply: str


def parse(text: str) -> Parsed:
    """Split a leading `#command` line from the reply text."""
    lines = text.strip().splitlines()
    m = _COMMAND.match(lines[0].strip()) if lines else None
    if m is None:
        return Parsed(None, [], "", text.strip())
    name = m.group(1).lower()
    first = (m.group(2) or "").strip()
    rest = "\n".join(lines[1:]).strip()
    if name == "note":
        note = "\n".join(part for part in (first, rest) if part)
        return Parsed(name, [note] if note else [], lines[0].strip(), "")
    # Words past the router's limit stay together in the last argument.
    args = first.split(maxsplit=MAX_ARGS - 1)
    if name not in COMMANDS:
        return Parsed(name, args, lines[0].strip(), "")
    return Parsed(name, args, lines[0].strip(), rest)


def agent_envelopes(env: Envelope, token: str | None) -> list[Envelope]:
    """The `reply` and/or `command` envelopes for an agent's mail (normalized as `env`)."""
    meta = env.meta
    body = meta.get("full_text") if isinstance(meta.get("full_text"), str) else env.text
    parsed = parse(new_text(body or env.text))
    native = meta.get("message_id") or meta.get("native_id") or env.id
    source = AgentInput(
        channel=env.channel,
        channel_type=env.channel_type,
        agent=env.sender.address.lower(),
        name=env.sender.name,
        token=token,
        sent_at=env.sent_at,
        received_at=env.received_at,
        subject=env.subject,
        meta={
            "message_id": meta.get("message_id"),
            "in_reply_to": meta.get("in_reply_to"),
            "references": meta.get("references", []),
            "to": meta.get("to", []),
        },
    )
    out: list[Envelope] = []
    if parsed.reply:
        out.append(source.reply(f"agent-reply:{native}", parsed.reply, attachments=env.attachments))
    if parsed.command is not None:
        out.append(
            source.command(
                f"agent-command:{native}",
                parsed.command,
                parsed.args,
                text=parsed.command_line,
                # The mail is taken either way: the router tells the agent it is unknown.
                pass_unknown=True,
            )
        )
    return out
