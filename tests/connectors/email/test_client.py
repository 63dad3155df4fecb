"""Sending against a real SMTP server (aiosmtpd): delivery, retries, failures, the rate limit."""

from __future__ import annotations

from pathlib import Path

from connectors.email.client import MAX_ATTACHED_BYTES
from router.blobs import BlobStore
from router.connector.testing import MemoryCheckpoints
from router.envelope import Attachment
from tests.connectors.email.helpers import reply, sender_for
from tests.harness.smtp import CapturingSmtp, start_smtp


async def test_delivered_and_ref_remembered(smtp_server: CapturingSmtp) -> None:
    checkpoints = MemoryCheckpoints()
    result = await sender_for(smtp_server, checkpoints).send(reply())
    assert result.status == "sent"
    [got] = smtp_server.messages
    assert got.recipients == ["customer@example.net"]
    assert got.message["Message-ID"] == result.native_id
    assert got.message.get_body(("plain",)).get_content().strip() == (
        "We are sending the mug today."
    )
    ref = checkpoints.values[("support-email", "ref:k7m2q9ta")]
    assert "customer@example.net" in ref and "<root@example.net>" in ref


async def test_a_rotated_password_file_is_used_at_the_next_login(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("first\n")
    with start_smtp(passwords={"support": "first"}) as server:
        sender = sender_for(server, username="support", password_file=str(secret))
        assert (await sender.send(reply("r1"))).status == "sent"
        secret.write_text("second\n")  # rotated on both sides; no reload
        server.passwords["support"] = "second"
        result = await sender.send(reply("r2"))
        assert result.status == "sent", result.detail
        assert server.logins == [("support", "first"), ("support", "second")]
        assert len(server.messages) == 2


def attached(blobs: BlobStore, data: bytes, name: str, content_type: str) -> Attachment:
    sha, ref = blobs.put(data)
    return Attachment(name=name, content_type=content_type, size=len(data), sha256=sha, ref=ref)


async def test_an_agents_files_are_attached(smtp_server: CapturingSmtp, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    pdf = b"%PDF-1.4 the refund receipt"
    files = [attached(blobs, pdf, "receipt.pdf", "application/pdf")]
    envelope = reply().model_copy(update={"attachments": files})
    result = await sender_for(smtp_server, blobs=blobs).send(envelope)
    assert result.status == "sent", result.detail
    [got] = smtp_server.messages
    [part] = list(got.message.iter_attachments())
    assert part.get_filename() == "receipt.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == pdf
    assert "We are sending the mug today." in got.message.get_body(("plain",)).get_content()


async def test_files_that_cannot_go_fail_the_send_and_nothing_is_sent(
    smtp_server: CapturingSmtp, tmp_path: Path
) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    gone = attached(BlobStore(tmp_path / "elsewhere"), b"not here", "a.txt", "text/plain")
    huge = gone.model_copy(update={"size": MAX_ATTACHED_BYTES + 1})
    for files, why in (([gone], "no such blob"), ([huge], "at most")):
        envelope = reply().model_copy(update={"attachments": files})
        result = await sender_for(smtp_server, blobs=blobs).send(envelope)
        assert result.status == "failed" and why in result.detail, result.detail
    assert smtp_server.messages == []


async def test_451_then_250_delivers_exactly_once(smtp_server: CapturingSmtp) -> None:
    smtp_server.data_replies.extend(["451 4.3.0 Try again later"] * 3)
    sender = sender_for(smtp_server)
    results = []
    for _ in range(10):  # what the daemon does: retry while the answer is "retry"
        result = await sender.send(reply())
        results.append(result.status)
        if result.status != "retry":
            break
    assert results == ["retry", "retry", "retry", "sent"]
    assert len(smtp_server.messages) == 1
    assert smtp_server.data_attempts == 4


async def test_550_fails_without_retry_and_names_the_recipient(
    smtp_server: CapturingSmtp,
) -> None:
    smtp_server.rcpt_replies["customer@example.net"] = "550 5.1.1 User unknown"
    result = await sender_for(smtp_server).send(reply())
    assert result.status == "failed"
    assert "customer@example.net: 550" in result.detail
    assert smtp_server.messages == []


async def test_partial_refusal_is_sent_with_detail(smtp_server: CapturingSmtp) -> None:
    smtp_server.rcpt_replies["gone@example.net"] = "550 5.1.1 User unknown"
    result = await sender_for(smtp_server).send(reply(cc=["gone@example.net"]))
    assert result.status == "sent"
    assert "gone@example.net: 550" in result.detail
    assert smtp_server.messages[0].recipients == ["customer@example.net"]


async def test_connection_refused_is_retry() -> None:
    server = CapturingSmtp(port=1)  # nothing listens there
    result = await sender_for(server).send(reply())
    assert result.status == "retry"


async def test_automatic_messages_are_marked_and_rate_limited(smtp_server: CapturingSmtp) -> None:
    sender = sender_for(smtp_server)
    first = await sender.send(reply("ack1", auto=True, in_reply_to=None, references=[]))
    second = await sender.send(reply("ack2", auto=True, in_reply_to=None, references=[]))
    assert first.status == "sent" and first.native_id
    assert second.status == "sent" and second.detail.startswith("suppressed")
    [got] = smtp_server.messages
    assert got.message["Auto-Submitted"] == "auto-replied"
    assert not got.message["Subject"].startswith("Re:")
    human = await sender.send(reply("r3"))  # people's replies are never limited
    assert human.status == "sent" and len(smtp_server.messages) == 2


async def test_unusable_envelope_fails(smtp_server: CapturingSmtp) -> None:
    result = await sender_for(smtp_server).send(reply(to=[]))
    assert result.status == "failed" and "no recipient" in result.detail
