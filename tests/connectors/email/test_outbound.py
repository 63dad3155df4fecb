"""Envelope → email, no I/O: threading of customer replies, notifications to agents."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.email.agentmail import REPLY_MARKER, decode_token
from connectors.email.errors import OutboundError
from connectors.email.inbound import normalize
from connectors.email.outbound import build_message, build_notification
from router.blobs import BlobStore
from router.envelope import Delivery, Envelope, Sender
from router.routing import tokens
from tests.connectors.email.helpers import email_config, reply

KEY = b"k" * 32
CONV = "0123456789abcdef0123456789abcdef"
TOKEN = tokens.issue(KEY, CONV, "ana")
SHARED = email_config()  # agents reply to support+token@ (the customers' address)

# --- customer replies -------------------------------------------------------------------


def test_reply_threads_in_the_customers_client() -> None:
    cfg = email_config()
    msg = build_message(reply(), cfg.smtp)
    assert msg["Subject"] == "Re: Your order #10442 [#k7m2q9ta]"
    assert msg["In-Reply-To"] == "<latest@example.net>"
    assert msg["References"] == "<root@example.net> <ours@shop.example> <latest@example.net>"
    assert msg["Reply-To"] == "Shop Support <support+k7m2q9ta@shop.example>"
    assert msg["From"] == "Shop Support <support@shop.example>"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Auto-Submitted"] is None
    # the same envelope always makes the same Message-ID
    assert msg["Message-ID"] == build_message(reply(), cfg.smtp)["Message-ID"]
    assert msg["Message-ID"] != build_message(reply("r2"), cfg.smtp)["Message-ID"]


def test_a_reply_threads_from_the_context_its_intake_wrote(tmp_path: Path) -> None:
    raw = (
        b"From: Eva <eva@example.net>\r\nTo: support@shop.example\r\n"
        b"Subject: Re: Where is my parcel?\r\nMessage-ID: <m2@example.net>\r\n"
        b"In-Reply-To: <m1@example.net>\r\nReferences: <m1@example.net>\r\n\r\nStill waiting.\r\n"
    )
    customer = normalize(raw, "support-email", BlobStore(tmp_path))
    # What the router sends back: the reply context unchanged, the conversation's subject.
    answer = reply(n="r9").model_copy(
        update={
            "thread_key": customer.thread_key,
            "subject": customer.subject,
            "reply_context": customer.reply_context,
        }
    )
    msg = build_message(answer, email_config().smtp)
    assert msg["To"] == "eva@example.net"
    assert msg["In-Reply-To"] == "<m2@example.net>"
    assert msg["References"] == "<m1@example.net> <m2@example.net>"
    assert msg["Subject"] == "Re: Where is my parcel? [#k7m2q9ta]"  # one "Re:"


# --- notifications ----------------------------------------------------------------------


def delivery(event: str = "assigned", **extra: Any) -> Envelope:
    context = {
        "customer": {
            "id": "c1",
            "name": "Eva <Núñez>",
            "tier": "gold",
            "tags": ["vip"],
            "language": "es",
            "identities": [
                {"kind": "email", "value": "eva@example.net"},
                {"kind": "phone", "value": "+34600111222"},
            ],
            "link_suggestions": [],
        },
        "conversation": {
            "id": CONV,
            "ref": "k7m2p9q",
            "channel": "support-email",
            "channel_type": "email",
            "status": "open",
            "priority": "high",
            "queue": "billing",
            "tags": [],
            "complaint": True,
            "language": "es",
            "sla_due_at": "2025-03-03T11:00:00+00:00",
            "subject": "Invoice",
        },
        "transcript": [
            {
                "id": "m1",
                "kind": "message",
                "direction": "in",
                "from": {"address": "eva@example.net", "name": "Eva", "role": "customer"},
                "at": "2025-03-03T10:00:00+00:00",
                "subject": "Invoice",
                "text": "Charged twice <script>alert(1)</script>",
                "attachments": [],
            }
        ],
        "other_conversations": [
            {
                "conversation_id": "x",
                "ref": "abc1234",
                "channel": "site-chat",
                "channel_type": "webchat",
                "status": "resolved",
                "owner": "ana",
                "updated_at": "2025-03-01T09:00:00+00:00",
                "extract": "where is my parcel",
            }
        ],
    }
    data = {
        "event": event,
        "agent": {"id": "ana", "name": "Ana"},
        "sink": {"type": "email", "address": "ana@corp.example"},
        "token": TOKEN,
        "reason": {"rule": "best_available", "detail": "least occupied", "skills": {"billing": 2}},
        "note": None,
        "context": context,
        **extra,
    }
    return Envelope(
        id="e" * 32,
        kind="message",
        direction="out",
        channel="support-email",
        channel_type="email",
        thread_key=CONV,
        conversation_id=CONV,
        sender=Sender(address="omnirouter", role="system"),
        received_at=datetime.now(UTC),
        subject="[#k7m2p9q] Invoice",
        text="Assigned: conversation #k7m2p9q on support-email\nCustomer: Eva",
        delivery=Delivery.model_validate(data),
    )


def test_notification_headers_and_body() -> None:
    msg = build_notification(delivery(), SHARED)
    assert msg["To"] == "ana@corp.example"
    assert parseaddr(msg["From"])[1] == "support@shop.example"
    reply_to = parseaddr(msg["Reply-To"])[1]
    assert decode_token(reply_to.partition("@")[0].partition("+")[2]) == TOKEN
    assert msg["Subject"] == "[#k7m2p9q] Invoice"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] == f"<omni.{'e' * 32}@shop.example>"
    assert msg["References"] == f"<omni.conversation.{CONV}@shop.example>"
    assert msg["X-Omnirouter-Conversation"] == "k7m2p9q"
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith(REPLY_MARKER) and "Customer: Eva" in text
    html = msg.get_body(("html",)).get_content()
    due = "Mon, Mar 3, 2025, 11:00\u202fAM UTC"  # the agent's zone is not known: UTC, said so
    for fact in ("eva@example.net", "+34600111222", due, "abc1234"):
        assert fact in html
    assert "You have the billing skill and the lightest load" in html and "COMPLAINT" in html
    assert "2025-03-0" not in html  # no raw timestamp
    assert "<script>" not in html and "Eva &lt;Núñez&gt;" in html
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Reply-To"] is not None  # survives being sent


def test_a_rejection_notice_has_no_reply_to() -> None:
    env = delivery("rejected", token=None, context={})
    msg = build_notification(env, SHARED)
    assert msg["Reply-To"] is None
    assert REPLY_MARKER not in msg.get_body(("plain",)).get_content()


def test_unusable_deliveries() -> None:
    with pytest.raises(OutboundError):
        build_notification(delivery(sink={"type": "email", "address": "not-an-address"}), SHARED)
    with pytest.raises(ValidationError, match="token"):  # the envelope refuses it already
        delivery(token=5)
