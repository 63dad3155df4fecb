"""Telegram connector: a bot, by long polling or webhook (secret token checked)."""

from connectors.telegram.config import TelegramChannelConfig
from router.connector import ConnectorSpec

spec = ConnectorSpec(
    type="telegram",
    description="A Telegram bot customers write to; replies go to the same chat.",
    config=TelegramChannelConfig,
    sink_accepts=True,  # the agent can press or send `accept`
    factory=None,
)

__all__ = ["TelegramChannelConfig", "spec"]
