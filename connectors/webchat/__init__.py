"""Web chat connector: a WebSocket endpoint for the chat widget on your site."""

from connectors.webchat.config import WebchatChannelConfig
from router.connector import ConnectorSpec

spec = ConnectorSpec(
    type="webchat",
    description="A chat widget on your site; the session is the thread.",
    config=WebchatChannelConfig,
    factory=None,
)

__all__ = ["WebchatChannelConfig", "spec"]
