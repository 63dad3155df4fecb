"""The Telegram connector's errors: all `ConnectorError`s.

- `BadUpdate`: an update is not of a documented shape (dead-lettered with the reason).
- `BotRefused`: Telegram refused the bot itself (a wrong or revoked token): retrying
  cannot help until the config changes.
- `ApiUnavailable`: Telegram could not be reached or timed out: the runner reconnects.

Send outcomes are `SendResult`s, not exceptions. No message here ever holds the bot
token: the library's errors are turned into ours by their type and Bot API answer.
"""

from __future__ import annotations

from router.errors import ConnectorError


class TelegramError(ConnectorError):
    """Root of the Telegram connector's errors."""

    retriable = False


class BadUpdate(TelegramError):
    """The update is not one we can read; the message names the field."""


class BotRefused(TelegramError):
    """Telegram refused the bot's token."""


class ApiUnavailable(TelegramError):
    """Telegram was unreachable, timed out or answered 5xx."""

    retriable = True
