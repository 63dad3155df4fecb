"""Agents in their mailbox: tokens in addresses, whose mail is whose, commands, their folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.email.agentmail import (
    REPLY_MARKER,
    decode_token,
    encode_token,
    new_text,
    parse,
    reply_to_address,
    route,
)
from connectors.email.connector import EmailConnector
from connectors.email.inbound import normalize
from router.blobs import BlobStore
from router.connector import Incoming, Rejected, Services
from router.connector.testing import MemoryCheckpoints
from router.envelope import Command, Envelope, Sender
from router.routing import tokens
from tests.connectors.email.helpers import email_config
from tests.harness.dovecot import ImapAccount

KEY = b"k" * 32
CONV = "0123456789abcdef0123456789abcdef"
TOKEN = tokens.issue(KEY, CONV, "ana")

# --- the token in the Reply-To address --------------------------------------------------


@given(conv=st.binary(min_size=16, max_size=16), agent=st.text(min_size=1, max_size=20))
def test_router_tokens_round_trip_in_50_address_safe_characters(conv: bytes, agent: str) -> None:
    token = tokens.issue(KEY, conv.hex(), agent)
    tag = encode_token(token)
    assert len(tag) == 50 and tag.isalnum() and tag == tag.lower()
    assert decode_token(tag) == token
    assert decode_token(tag.upper()) == token  # servers may change the case


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "k7m2p9q",  # a customer conversation ref
        encode_token(TOKEN)[:-1],  # cut short
        encode_token(TOKEN) + "a",
        encode_token(TOKEN).replace("a", "1"),  # not base32
        "7" + encode_token(TOKEN)[1:25] + "7" + encode_token(TOKEN)[26:],  # non-canonical bits
        "abc--def",
    ],
)
def test_tags_that_are_not_tokens(tag: str) -> None:
    assert decode_token(tag) is None


def test_other_token_shapes_keep_their_dots_as_hyphens() -> None:
    assert encode_token("abc.def.1") == "abc-def-1"
    assert decode_token("abc-def-1") == "abc.def.1"
    with pytest.raises(ValueError):
        encode_token("no dot")


def test_reply_address_fits_smtp_limits() -> None:
    cfg = email_config()
    address = reply_to_address(cfg.agent_reply_address, TOKEN)
    local, _, domain = address.partition("@")
    assert domain == "shop.example" and len(local) <= 64
    assert local == f"support+{encode_token(TOKEN)}"


@pytest.mark.parametrize(
    ("agents", "error"),
    [
        ({"reply_address": "customer-care-team@shop.example"}, "at most 13 characters"),
        ({"reply_address": "ag+ents@shop.example"}, "must not contain '\\+'"),
    ],
)
def test_reply_addresses_that_cannot_carry_a_token_are_refused(
    agents: dict[str, str], error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        email_config(agents=agents)


# --- which mail is an agent's -----------------------------------------------------------

SHARED = email_config()  # agents reply to support+token@ (the customers' address)
OWN = email_config(agents={"reply_address": "agents@shop.example"})
TAG = encode_token(TOKEN)


@pytest.mark.parametrize(
    ("cfg", "recipients", "folder", "agent", "token"),
    [
        (SHARED, ["support@shop.example"], False, False, None),
        (SHARED, ["support+k7m2p9q@shop.example"], False, False, None),  # customer ref
        (SHARED, [f"support+{TAG}@shop.example"], False, True, TOKEN),
        (SHARED, [f"Support+{TAG.upper()}@Shop.Example"], False, True, TOKEN),
        (SHARED, ["someone@else.example", f"support+{TAG}@shop.example"], False, True, TOKEN),
        (SHARED, [f"support+{TAG[:40]}@shop.example"], False, True, None),  # damaged token
        (SHARED, [f"other+{TAG}@shop.example"], False, False, None),
        (SHARED, [f"support+{TAG}@other.example"], False, False, None),
        (SHARED, ["support@shop.example"], True, True, None),  # the agents' folder
        (OWN, ["agents@shop.example"], False, True, None),  # dedicated address, no token
        (OWN, ["agents+k7m2p9q@shop.example"], False, True, None),
        (OWN, [f"agents+{TAG}@shop.example"], False, True, TOKEN),
        (OWN, [f"support+{TAG}@shop.example"], False, False, None),
    ],
)
def test_route(cfg: Any, recipients: list[str], folder: bool, agent: bool, token: str) -> None:
    found = route(recipients, cfg, agents_folder=folder)
    assert (found.agent, found.token) == (agent, token)


# --- what the agent wrote ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command", "args", "reply"),
    [
        ("Refunded today.", None, [], "Refunded today."),
        ("#resolve", "resolve", [], ""),
        ("#Resolve\nRefunded today.", "resolve", [], "Refunded today."),
        (
            "#transfer billing please check refund\nA colleague takes over.",
            "transfer",
            ["billing", "please", "check", "refund"],
            "A colleague takes over.",
        ),
        (
            "#note VIP customer\nasked twice already",
            "note",
            ["VIP customer\nasked twice already"],
            "",
        ),
        ("#away", "away", [], ""),
        ("\n\n#link email eva@example.org\n", "link", ["email", "eva@example.org"], ""),
        ("#reslove\nRefunded today.", "reslove", [], ""),  # unknown: the text is held back
        ("# Steps\n1. restart", None, [], "# Steps\n1. restart"),
        ("#1 priority for us", None, [], "#1 priority for us"),
        ("Thanks\n#resolve", None, [], "Thanks\n#resolve"),  # only a first line commands
        # past the router's 50 arguments, the rest of the line stays in the last one
        ("#transfer " + "w " * 60, "transfer", ["w"] * 49 + [" ".join(["w"] * 11)], ""),
    ],
)
def test_parse(text: str, command: str | None, args: list[str], reply: str) -> None:
    parsed = parse(text)
    assert (parsed.command, parsed.args, parsed.reply) == (command, args, reply)


@given(st.text(max_size=300))
def test_any_text_parses(text: str) -> None:
    parsed = parse(new_text(text))
    assert parsed.command is None or parsed.command == parsed.command.lower()
    assert REPLY_MARKER not in parsed.reply


QUOTE_HEADER = "On Mon, 3 Mar 2025 at 10:01, Shop Support <support@shop.example> wrote:"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"Refunded.\n\n{QUOTE_HEADER}\n> {REPLY_MARKER}\n> Customer: Eva", "Refunded."),
        (f"Refunded.\n-- \nAna\n\n{QUOTE_HEADER}\n> {REPLY_MARKER}", "Refunded."),
        (
            "Refunded.\n\nFrom: Shop Support <support@shop.example>\nSent: Monday\n"
            f"To: ana@corp.example\nSubject: [#k7m2p9q] Invoice\n\n{REPLY_MARKER}\nCustomer: Eva",
            "Refunded.",
        ),
        (f"Refunded.\n{REPLY_MARKER}\nCustomer: Eva", "Refunded."),  # a client that quotes bare
        (f"{QUOTE_HEADER}\n> {REPLY_MARKER}\n> Customer: Eva", ""),  # nothing new: nothing
        (f"> {REPLY_MARKER}\n> Customer: Eva", ""),
    ],
)
def test_new_text_never_keeps_the_quoted_notification(body: str, expected: str) -> None:
    assert new_text(body) == expected


# --- agent mail through the connector (normalized as the intake does) -------------------


def raw_mail(
    n: int,
    *,
    sender: str = "Ana <ana@corp.example>",
    to: str = f"support+{TAG}@shop.example",
    body: str = "Refunded today.",
    headers: str = "",
    html: bool = False,
) -> bytes:
    ctype = "text/html" if html else "text/plain"
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Re: [#k7m2p9q] Invoice\r\n"
        f"Message-ID: <r{n}@corp.example>\r\nIn-Reply-To: <omni.x@shop.example>\r\n"
        f"Date: Mon, 3 Mar 2025 10:05:00 +0000\r\n{headers}"
        f"Content-Type: {ctype}; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def sorted_items(raw: bytes, tmp: Path, cfg: Any = SHARED, *, folder: bool = False) -> list[Any]:
    blobs = BlobStore(tmp / "blobs")
    conn = EmailConnector(
        "support-email", cfg, Services(blobs=blobs, checkpoints=MemoryCheckpoints())
    )
    env = normalize(raw, "support-email", blobs)
    acked: list[str] = []

    async def ack(outcome: object = None) -> None:
        acked.append(env.id)

    items = conn._sort(Incoming(envelope=env, ack=ack), agents_folder=folder)
    return items


def test_customer_mail_passes_unchanged(tmp_path: Path) -> None:
    raw = raw_mail(1, sender="eva@example.net", to="support@shop.example")
    [item] = sorted_items(raw, tmp_path)
    assert isinstance(item, Incoming)
    assert (item.envelope.kind, item.envelope.sender.role) == ("message", "customer")


async def test_a_reply_with_a_command_is_a_reply_then_the_command(tmp_path: Path) -> None:
    body = f"#resolve\nRefunded today.\n\n{QUOTE_HEADER}\n> {REPLY_MARKER}\n> Customer: Eva"
    raw = raw_mail(2, sender="Ana <ANA@Corp.Example>", body=body)
    items = sorted_items(raw, tmp_path)
    assert [i.envelope.kind for i in items] == ["reply", "command"]
    reply, command = (i.envelope for i in items)
    assert reply.text == "Refunded today."
    assert command.command == Command(name="resolve")
    for env in (reply, command):
        assert env.sender == Sender(address="ana@corp.example", name="Ana", role="agent")
        assert env.meta["token"] == TOKEN
        assert env.thread_key == CONV  # one conversation's agent input stays in order
        assert env.direction == "in"
    assert reply.id != command.id
    again = sorted_items(raw, tmp_path)  # same mail again (a restart): same ids
    assert [i.envelope.id for i in again] == [reply.id, command.id]


async def test_promise_and_kept_lines_are_commands_and_the_text_under_them_a_reply(
    tmp_path: Path,
) -> None:
    first = "#promise 17:00 call back with the refund status"
    body = f"{first}\nI will call you by five.\n\n{QUOTE_HEADER}\n> {REPLY_MARKER}"
    reply, command = (i.envelope for i in sorted_items(raw_mail(4, body=body), tmp_path))
    assert (reply.kind, reply.text) == ("reply", "I will call you by five.")
    assert command.command == Command(
        name="promise", args=["17:00", "call", "back", "with", "the", "refund", "status"]
    )
    assert command.text == first
    [kept] = sorted_items(raw_mail(5, body="#kept"), tmp_path)
    assert kept.envelope.command == Command(name="kept")
    assert kept.envelope.meta["token"] == TOKEN


def test_an_html_reply_is_cut_at_the_marker(tmp_path: Path) -> None:
    body = (
        "<div>Refunded <b>today</b>.</div><div><br></div><blockquote>"
        f"<p>{REPLY_MARKER}</p><p>Customer: Eva</p></blockquote>"
    )
    [item] = sorted_items(raw_mail(3, body=body, html=True), tmp_path)
    assert item.envelope.kind == "reply"
    assert item.envelope.text == "Refunded today."


def test_a_reply_without_a_token_is_passed_on_for_the_router_to_reject(tmp_path: Path) -> None:
    [item] = sorted_items(raw_mail(4, to="agents@shop.example"), tmp_path, OWN)
    assert item.envelope.kind == "reply" and item.envelope.meta["token"] is None
    assert item.envelope.thread_key == "agent:ana@corp.example"


def test_delivered_to_finds_the_token_when_to_does_not(tmp_path: Path) -> None:
    raw = raw_mail(
        5, to="undisclosed-recipients:;", headers=f"Delivered-To: support+{TAG}@shop.example\r\n"
    )
    [item] = sorted_items(raw, tmp_path)
    assert item.envelope.kind == "reply" and item.envelope.meta["token"] == TOKEN


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ("Auto-Submitted: auto-replied\r\n", "I am out of office until Monday.", "automatic"),
        ("", f"{QUOTE_HEADER}\n> {REPLY_MARKER}\n> Customer: Eva", "no new text"),
    ],
)
async def test_agent_mail_with_nothing_for_the_customer_is_rejected(
    tmp_path: Path, headers: str, body: str, reason: str
) -> None:
    [item] = sorted_items(raw_mail(6, headers=headers, body=body), tmp_path)
    assert isinstance(item, Rejected)
    assert reason in item.reason
    assert item.native_id == "<r6@corp.example>"


# --- a second folder for agents' replies (real Dovecot) ---------------------------------


@pytest.mark.imap
async def test_agents_folder_is_read_beside_the_inbox(
    imap_account: ImapAccount, tmp_path: Path
) -> None:
    imap_account.create("Agents")
    cfg = email_config(
        imap_port=imap_account.port,
        user=imap_account.username,
        password=imap_account.password,
        agents={"folder": "Agents"},
    )
    services = Services(blobs=BlobStore(tmp_path / "blobs"), checkpoints=MemoryCheckpoints())
    conn = EmailConnector("support-email", cfg, services)
    imap_account.append(raw_mail(7, sender="eva@example.net", to="support@shop.example"))
    imap_account.append(raw_mail(8, to="support@shop.example"), folder="Agents")
    await conn.start()
    gen = conn.receive()
    try:
        got: dict[str, Envelope] = {}
        async with asyncio.timeout(10):
            while len(got) < 2:
                item = await anext(gen)
                await item.ack()
                got[item.envelope.kind] = item.envelope
        assert got["message"].sender.role == "customer"
        assert got["reply"].sender.role == "agent" and got["reply"].meta["token"] is None
    finally:
        await gen.aclose()
        await conn.stop()
