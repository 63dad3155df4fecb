"""Web chat connector: a WebSocket endpoint for the chat widget on your site."""

from datetime import timedelta

from connectors.webchat.config import WebchatChannelConfig
from connectors.webchat.connector import build
from router.connector import ConnectorSpec

_M = timedelta(minutes=1)

spec = ConnectorSpec(
    type="webchat",
    description="A chat widget on your site; the session is the thread.",
    config=WebchatChannelConfig,
    factory=build,
    default_capacity=3,
    # Chat customers expect an answer within minutes.
    default_targets={"urgent": _M, "high": 2 * _M, "normal": 5 * _M, "low": 15 * _M},
    identity_kind="webchat",  # the visitor id
    live_standing=True,  # the widget shows the queue position and updates it
    live_signals=True,  # the widget shows "typing" and marks messages seen
    answer_channel=lambda block: block.answer_by_email,  # a visitor answered by email too
    http_routes=WebchatChannelConfig.http_routes,
)

__all__ = ["WebchatChannelConfig", "spec"]
