"""The webhook connector's errors: all `ConnectorError`s, none of them retriable.

- `BadSignature` (the kit's, `router.connector.signing`): an event's timestamp
  or signature is missing, stale or wrong (answered 401).
- `BadEvent`: an event's body is not JSON or not of a documented shape; the
  message names the field (answered 400).

Delivery outcomes are `SendResult`s, not exceptions.
"""

from __future__ import annotations

from router.connector.signing import BadSignature
from router.errors import ConnectorError

__all__ = ["BadEvent", "BadSignature", "WebhookError"]


class WebhookError(ConnectorError):
    """Root of the webhook connector's errors."""

    retriable = False


class BadEvent(WebhookError):
    """The body is not an event we take; the message names the field."""
