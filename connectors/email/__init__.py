"""Email connector: customer mail in over IMAP IDLE, replies out over SMTP in-thread."""

from connectors.email.config import EmailChannelConfig
from router.connector import ConnectorSpec

spec = ConnectorSpec(
    type="email",
    description="A support mailbox: IMAP IDLE in, SMTP out, replies kept in the thread.",
    config=EmailChannelConfig,
    factory=None,
)

__all__ = ["EmailChannelConfig", "spec"]
