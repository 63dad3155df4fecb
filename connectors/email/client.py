"""The SMTP client: sends the email `outbound` builds for an envelope (aiosmtplib).

The outbound topic is the durable outbox; this module only answers, for each
envelope, `sent`, `retry` or `failed` (see the package docstring for the
envelope convention):

- a connection error, a timeout, a TLS failure (e.g. a certificate the
  configured trust does not accept; the detail names the server and the
  reason), an authentication failure or any 4xx reply → `retry` (the daemon
  retries with backoff; the message keeps its Message-ID, derived from the
  envelope id, so a retry after an ambiguous timeout is recognizable as the
  same message);
- a 5xx reply for the sender, the data or every recipient → `failed`, with
  each recipient's reply in the detail (the daemon dead-letters it and the
  router records the delivery failure);
- some recipients accepted and some refused → `sent` (never send twice to
  the ones who got it), with the refused ones in the detail;
- an automatic message (`automated.auto`) to an address that already had one
  within `auto_reply_window` → `sent` with detail `suppressed: ...`: nothing
  goes out, and nothing is retried;
- an envelope `outbound` cannot use → `failed` with the reason.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import structlog

from connectors.email.config import SmtpConfig
from connectors.email.errors import OutboundError
from connectors.email.outbound import addressing, build_message, is_auto
from connectors.email.threads import remember_ref
from connectors.email.tls import TlsSetupError, client_context, describe_tls_failure, tls_failure
from router.blobs import BlobError, BlobStore
from router.connector import Checkpoints, SendResult
from router.envelope import Attachment, Envelope

log = structlog.get_logger(__name__)

# Attachments of one email together: most mail servers refuse messages over 25 MB, and
# base64 makes them a third larger.
MAX_ATTACHED_BYTES = 18 * 1024 * 1024


class SmtpSender:
    """Sends outbound envelopes for one channel."""

    def __init__(
        self,
        channel: str,
        cfg: SmtpConfig,
        checkpoints: Checkpoints,
        auto_window: timedelta,
        blobs: BlobStore | None = None,
    ) -> None:
        self.channel = channel
        self.cfg = cfg
        self.checkpoints = checkpoints
        self.auto_window = auto_window
        self.blobs = blobs  # where an agent's files are, to attach them

    async def _files(self, envelope: Envelope) -> list[tuple[Attachment, bytes]]:
        """The envelope's attachments and their bytes; `OutboundError` when one cannot be
        sent (too large together, or gone from the blob store): never sent without them."""
        if not envelope.attachments:
            return []
        total = sum(a.size for a in envelope.attachments)
        if total > MAX_ATTACHED_BYTES:
            raise OutboundError(
                f"attachments of {total} bytes; at most {MAX_ATTACHED_BYTES} go by email"
            )
        if self.blobs is None:
            raise OutboundError("attachments, but no blob store to read them from")
        files = []
        for attachment in envelope.attachments:
            try:
                data = await asyncio.to_thread(self.blobs.get, attachment.ref)
            except BlobError as exc:
                raise OutboundError(f"attachment {attachment.name!r}: {exc}") from exc
            files.append((attachment, data))
        return files

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        password = None
        if cfg.username is not None and cfg.password is not None:
            password = cfg.password.current()  # a rotated password_file: used from now on
        tls = None
        if cfg.security != "none":
            tls = client_context(
                cfg.ca_file, verify=cfg.verify_certificate, what=f"smtp {cfg.host}:{cfg.port}"
            )
        return aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=password,
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=tls,
            timeout=cfg.timeout.total_seconds(),
        )

    async def send(self, envelope: Envelope) -> SendResult:
        try:
            msg = build_message(envelope, self.cfg, await self._files(envelope))
        except OutboundError as exc:
            return SendResult(status="failed", detail=f"unusable outbound envelope: {exc}")
        message_id = str(msg["Message-ID"])
        to = addressing(envelope)[0]
        auto = is_auto(envelope)
        if auto and await self._recently_auto(to[0]):
            log.info("automatic message suppressed", channel=self.channel, record_id=envelope.id)
            return SendResult(
                status="sent",
                detail=f"suppressed: {to[0]} had an automatic message within {self.auto_window}",
            )
        recipients = to + addressing(envelope)[1]
        result = await self.deliver(msg, recipients)
        if result.status != "sent":
            return result
        ref = envelope.meta.get("conversation_ref")
        if isinstance(ref, str):
            await remember_ref(self.checkpoints, self.channel, ref, envelope.thread_key, to[0])
        if auto:
            now = datetime.now(UTC).isoformat()
            await self.checkpoints.set_checkpoint(self.channel, f"auto:{to[0].lower()}", now)
        return SendResult(status="sent", detail=result.detail, native_id=message_id)

    async def _recently_auto(self, address: str) -> bool:
        last = await self.checkpoints.get_checkpoint(self.channel, f"auto:{address.lower()}")
        if last is None:
            return False
        try:
            when = datetime.fromisoformat(last)
        except ValueError:
            return False
        return datetime.now(UTC) - when < self.auto_window

    async def deliver(self, msg: EmailMessage, recipients: list[str]) -> SendResult:
        """Send a built message; the outcome as a `SendResult` (see the module docstring)."""
        try:
            async with self._client() as smtp:
                refused, _ = await smtp.send_message(
                    msg, sender=self.cfg.from_address, recipients=recipients
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            temporary = any(400 <= r.code < 500 for r in exc.recipients)
            return SendResult(status="retry" if temporary else "failed", detail=detail)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The credentials, not this message: keep it in the outbox until they are fixed.
            return SendResult(status="retry", detail=f"authentication failed: {exc.code}")
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                return SendResult(status="failed", detail=f"{exc.code} {exc.message}")
            return SendResult(status="retry", detail=f"{exc.code} {exc.message}")
        except TlsSetupError as exc:
            return SendResult(status="retry", detail=str(exc))
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            # The server, its certificate or the network, not this message: retry later.
            if (tls_error := tls_failure(exc)) is not None:
                cfg = self.cfg
                detail = describe_tls_failure(tls_error, cfg.host, cfg.port, cfg.ca_file)
                log.warning("SMTP TLS failed", channel=self.channel, error=detail)
                return SendResult(status="retry", detail=detail)
            return SendResult(status="retry", detail=f"{type(exc).__name__}: {exc}")
        if refused:
            detail = "refused: " + "; ".join(
                f"{addr}: {resp.code} {resp.message}" for addr, resp in refused.items()
            )
            return SendResult(status="sent", detail=detail)
        return SendResult(status="sent", detail="accepted: " + ", ".join(recipients))
