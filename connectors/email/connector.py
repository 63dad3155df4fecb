"""The email connector: the IMAP intake and the SMTP sender behind the connector contract."""

from __future__ import annotations

from collections.abc import AsyncIterator

from connectors.email.config import EmailChannelConfig
from connectors.email.imap import ImapIntake
from connectors.email.normalize import DEFAULT_MAX_ATTACHMENT, Options
from connectors.email.smtp import SmtpSender
from router.connector import Incoming, Rejected, SendResult, Services
from router.envelope import Envelope


def options_for(cfg: EmailChannelConfig) -> Options:
    return Options(
        limits=cfg.limits,
        max_attachment_bytes=cfg.max_attachment_bytes or DEFAULT_MAX_ATTACHMENT,
        strip_quoted_history=cfg.strip_quoted_history,
        own_address=cfg.smtp.from_address,
    )


class EmailConnector:
    """One email channel: `receive()` reads the mailbox, `send()` writes replies."""

    def __init__(self, name: str, cfg: EmailChannelConfig, services: Services) -> None:
        self.name = name
        self.cfg = cfg
        self.intake = ImapIntake(name, cfg, services.blobs, services.checkpoints, options_for(cfg))
        self.sender = SmtpSender(name, cfg.smtp, services.checkpoints, cfg.auto_reply_window)

    async def start(self) -> None:
        """Connect and log in now, so a wrong password or folder shows at once."""
        await self.intake.connect()

    async def stop(self) -> None:
        await self.intake.close()

    async def receive(self) -> AsyncIterator[Incoming | Rejected]:
        async for item in self.intake.receive():
            yield item

    async def send(self, envelope: Envelope) -> SendResult:
        return await self.sender.send(envelope)


def build(name: str, settings: EmailChannelConfig, services: Services) -> EmailConnector:
    """The `ConnectorSpec.factory` for `type: email`."""
    return EmailConnector(name, settings, services)
