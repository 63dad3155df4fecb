"""The `telegram:` block of a channel: one bot, by webhook or long polling."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from router.config.types import Duration, Secret, Section, fail, require_secret
from router.connector import HttpRoute

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as secret_token


class TelegramWebhookConfig(Section):
    """Telegram calls us: needs a public HTTPS URL reaching the HTTP listener."""

    path: str = Field(
        "/telegram/webhook",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path on the HTTP listener that receives updates (unique per channel).",
    )
    public_url: str = Field(
        description="HTTPS URL Telegram posts to (registered with setWebhook); it must"
        " reach `path` through your proxy.",
    )
    secret_token: Secret | None = Field(
        None,
        description="Value Telegram sends in X-Telegram-Bot-Api-Secret-Token;"
        " 1-256 characters A-Z a-z 0-9 _ -.",
    )

    @field_validator("public_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if urlsplit(value).scheme != "https":
            raise ValueError("Telegram only calls https:// URLs")
        return value

    @model_validator(mode="after")
    def _token(self) -> TelegramWebhookConfig:
        require_secret(self, "secret_token", "forged updates are refused with it")
        token = self.secret_token
        if token is not None and token.known and not _TOKEN.fullmatch(token.get_secret_value()):
            raise fail(
                type(self).__name__,
                ("secret_token",),
                "must be 1-256 characters of A-Z a-z 0-9 _ -",
            )
        return self


class TelegramPollingConfig(Section):
    """We call Telegram (getUpdates): works behind NAT, no public URL needed."""

    timeout: Duration = Field(
        timedelta(seconds=30),
        description="Long-poll timeout of each getUpdates call.",
    )


class TelegramChannelConfig(Section):
    """A Telegram channel: one bot customers write to."""

    bot_token: Secret | None = Field(None, description="Bot token from @BotFather.")
    mode: Literal["polling", "webhook"] = Field(
        "polling",
        description="`polling` (getUpdates) or `webhook` (Telegram calls us).",
    )
    webhook: TelegramWebhookConfig | None = Field(
        None,
        description="Webhook settings; required with `mode: webhook`.",
    )
    polling: TelegramPollingConfig = Field(
        default_factory=TelegramPollingConfig,
        description="Polling settings.",
    )
    api_url: str = Field(
        "https://api.telegram.org",
        description="Bot API base URL (a local Bot API server or a test fake).",
    )
    card_retention: Duration = Field(
        timedelta(days=90),
        description="How long an agent's card stays answerable: its message id is kept with"
        " the conversation token this long after it was sent (pruned hourly); a reply to an"
        " older card asks which conversation it is for.",
    )

    @model_validator(mode="after")
    def _complete(self) -> TelegramChannelConfig:
        title = type(self).__name__
        require_secret(self, "bot_token", "the bot's token from @BotFather")
        if self.mode == "webhook" and self.webhook is None:
            raise fail(title, ("webhook",), "mode: webhook needs a webhook block")
        return self

    def http_routes(self, channel: str) -> list[HttpRoute]:
        """The webhook's route; polling adds none."""
        if self.mode != "webhook" or self.webhook is None:
            return []
        return [HttpRoute("POST", self.webhook.path, ("webhook", "path"))]
