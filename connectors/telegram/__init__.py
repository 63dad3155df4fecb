"""Telegram connector: a bot, by long polling or webhook (secret token checked).

Modules: `config` (the `telegram:` block), `inbound` (updates read, pure),
`outbound` (replies and agents' cards written, pure), `client` (the bot's
transport, the update offset, the pacing), `connector` (the contract: intake,
sending, agents), `identity` (user ids, shared contacts, signed deep links),
`errors`. Behaviour for operators: docs/telegram.md.
"""

from datetime import timedelta

from connectors.telegram.config import TelegramChannelConfig
from connectors.telegram.connector import build
from connectors.telegram.identity import user_id
from router.connector import ConnectorSpec

_M, _H = timedelta(minutes=1), timedelta(hours=1)

spec = ConnectorSpec(
    type="telegram",
    description="A Telegram bot customers write to; replies go to the same chat.",
    config=TelegramChannelConfig,
    customer_channel=True,
    agent_sink=True,  # agents get direct messages from the bot
    sink_address=user_id,  # the agent's numeric user id
    sink_accepts=True,  # the agent can press or send `accept`
    default_capacity=5,
    default_targets={"urgent": 5 * _M, "high": 15 * _M, "normal": _H, "low": 4 * _H},
    identity_kind="telegram",
    normalize_identity=user_id,
    factory=build,
    http_routes=TelegramChannelConfig.http_routes,
)

__all__ = ["TelegramChannelConfig", "spec"]
