"""The `email:` block of a channel: one mailbox read over IMAP, written over SMTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from router.config.types import Duration, EmailAddress, Secret, SecretFile, Section, fail

Security = Literal["tls", "starttls", "none"]
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ImapConfig(Section):
    """Where customer mail arrives (IMAP IDLE, polling as a fallback)."""

    host: str = Field(min_length=1, description="IMAP server host name.")
    port: int = Field(993, ge=1, le=65535, description="IMAP port (993 with tls, 143 otherwise).")
    security: Security = Field(
        "tls",
        description="`tls` (implicit TLS), `starttls`, or `none` (localhost only).",
    )
    verify_certificate: bool = Field(True, description="Check the server's TLS certificate.")
    username: str = Field(min_length=1, description="Login name of the mailbox.")
    auth: Literal["login", "xoauth2"] = Field(
        "login",
        description="`login` (password) or `xoauth2` (OAuth 2 access token).",
    )
    password: Secret | None = Field(None, description="Password, with `auth: login`.")
    password_file: SecretFile | None = Field(
        None,
        description="File holding the password (instead of `password`).",
    )
    oauth2_token: Secret | None = Field(
        None,
        description="OAuth 2 access token, with `auth: xoauth2`.",
    )
    oauth2_token_file: SecretFile | None = Field(
        None,
        description="File holding the access token, re-read on every login"
        " (instead of `oauth2_token`).",
    )
    folder: str = Field("INBOX", min_length=1, description="Folder customer mail arrives in.")
    agent_reply_folder: str | None = Field(
        None,
        description="Folder where agents' replies to notifications arrive, when they"
        " use this mailbox (null: the same as `folder`).",
    )
    idle_renew: Duration = Field(
        timedelta(minutes=25),
        description="Re-issue IDLE this often (servers drop it at 30m).",
    )
    poll_interval: Duration = Field(
        timedelta(seconds=60),
        description="How often to poll when the server lacks IDLE.",
    )

    @model_validator(mode="after")
    def _credentials(self) -> ImapConfig:
        title = type(self).__name__
        if self.auth == "login" and self.password is None and self.password_file is None:
            raise fail(title, ("password",), "auth: login needs password or password_file")
        if self.auth == "xoauth2" and self.oauth2_token is None and self.oauth2_token_file is None:
            raise fail(
                title, ("oauth2_token",), "auth: xoauth2 needs oauth2_token or oauth2_token_file"
            )
        if self.security == "none" and self.host not in _LOCAL_HOSTS:
            raise fail(
                title,
                ("security",),
                "security: none would send the password in clear"
                " text; use tls or starttls (none is allowed for localhost only)",
            )
        return self


class SmtpConfig(Section):
    """How replies to customers are sent."""

    host: str = Field(min_length=1, description="SMTP server host name.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 submission, 465 tls).")
    security: Security = Field(
        "starttls",
        description="`starttls`, `tls` (implicit TLS) or `none` (localhost only).",
    )
    verify_certificate: bool = Field(True, description="Check the server's TLS certificate.")
    username: str | None = Field(None, description="Login name (null: no authentication).")
    password: Secret | None = Field(None, description="Password for `username`.")
    password_file: SecretFile | None = Field(
        None,
        description="File holding the password (instead of `password`).",
    )
    from_address: EmailAddress = Field(
        description="Address replies are sent from (usually the mailbox's own).",
    )
    from_name: str | None = Field(None, description="Display name of the sender.")

    @model_validator(mode="after")
    def _credentials(self) -> SmtpConfig:
        title = type(self).__name__
        if self.username is not None and self.password is None and self.password_file is None:
            raise fail(title, ("password",), "username is set: give password or password_file")
        if self.security == "none" and self.username is not None and self.host not in _LOCAL_HOSTS:
            raise fail(
                title,
                ("security",),
                "security: none would send the password in clear"
                " text; use tls or starttls (none is allowed for localhost only)",
            )
        return self


class EmailChannelConfig(Section):
    """An email channel: a support mailbox."""

    imap: ImapConfig = Field(description="Receiving.")
    smtp: SmtpConfig = Field(description="Sending.")
    strip_quoted_history: bool = Field(
        True,
        description="Remove quoted earlier messages from the text agents see.",
    )
    max_attachment_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest attachment kept (null: `blobs.max_attachment_bytes`).",
    )
