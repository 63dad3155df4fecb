"""The `email:` block of a channel: one mailbox read over IMAP, written over SMTP."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from connectors.email.tls import check_ca_file
from router.config.types import Duration, EmailAddress, Secret, Section, fail, require_secret

Security = Literal["tls", "starttls", "none"]
_VERIFY_DOC = (
    "Check the server's TLS certificate. `false` turns every check off (a warning is"
    " logged on each connection); to trust a private CA, set `ca_file` instead."
)
_CA_FILE_DOC = (
    "PEM file of the CA certificates that may sign the server's certificate, for a"
    " server with a private CA (null: the system trust store). The host name is still"
    " checked. Read again on every connection."
)


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1): traffic that never leaves the host."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(
    section: ImapConfig | SmtpConfig, info: ValidationInfo
) -> tuple[tuple[str, ...], str] | None:
    """Where and why the TLS settings of `section` are unusable, or None."""
    ca_file = section.ca_file
    if ca_file is None:
        return None
    if section.security == "none":
        return ("ca_file",), "ca_file is used only with security: tls or starttls"
    if not section.verify_certificate:
        return (
            ("verify_certificate",),
            "verify_certificate: false ignores ca_file; remove one of them (keep ca_file"
            " to trust a private CA with the certificate still checked)",
        )
    if (info.context or {}).get("channel_enabled", True) is False:
        return None  # a disabled channel's files need not exist yet
    problem = check_ca_file(ca_file)
    return (("ca_file",), problem) if problem else None


TOKEN_CHARS = 50  # a conversation token as a plus-address (see `agentmail.encode_token`)
MAX_REPLY_LOCAL = 64 - 1 - TOKEN_CHARS


class ImapConfig(Section):
    """Where customer mail arrives (IMAP IDLE, polling as a fallback)."""

    host: str = Field(min_length=1, description="IMAP server host name.")
    port: int = Field(993, ge=1, le=65535, description="IMAP port (993 with tls, 143 otherwise).")
    security: Security = Field(
        "tls",
        description="`tls` (implicit TLS), `starttls`, or `none` (localhost only).",
    )
    verify_certificate: bool = Field(True, description=_VERIFY_DOC)
    ca_file: Path | None = Field(None, description=_CA_FILE_DOC)
    username: str = Field(min_length=1, description="Login name of the mailbox.")
    auth: Literal["login", "xoauth2"] = Field(
        "login",
        description="`login` (password) or `xoauth2` (OAuth 2 access token).",
    )
    password: Secret | None = Field(
        None,
        description="Password, with `auth: login` (from `password_file`: re-read on every login).",
    )
    oauth2_token: Secret | None = Field(
        None,
        description="OAuth 2 access token, with `auth: xoauth2` (from `oauth2_token_file`:"
        " re-read on every login).",
    )
    folder: str = Field("INBOX", min_length=1, description="Folder customer mail arrives in.")
    idle_renew: Duration = Field(
        timedelta(minutes=25),
        description="Re-issue IDLE this often (servers drop it at 30m).",
    )
    poll_interval: Duration = Field(
        timedelta(seconds=60),
        description="How often to poll when the server lacks IDLE.",
    )
    first_start: Literal["unseen", "all", "new"] = Field(
        "unseen",
        description="What the very first start takes in (no checkpoint yet): `unseen`"
        " (messages without the \\Seen flag), `all` (everything in the folder) or `new`"
        " (only mail that arrives from now on). Later starts resume from the checkpoint.",
    )
    processed: Literal["flag", "move", "delete", "none"] = Field(
        "flag",
        description="What happens to a message once it is safely on the bus: `flag` (set"
        " `processed_flag`), `move` (to `processed_folder`), `delete` (expunge it; only"
        " if you keep copies elsewhere) or `none`. The checkpoint, not the flag, decides"
        " what has been taken in.",
    )
    processed_flag: str = Field(
        "\\Seen",
        min_length=1,
        description="Flag or keyword set on processed messages, with `processed: flag`.",
    )
    processed_folder: str | None = Field(
        None,
        description="Folder processed messages are moved to, with `processed: move`.",
    )
    timeout: Duration = Field(
        timedelta(seconds=30),
        description="How long one IMAP command may take before the connection is"
        " considered dead and opened again.",
    )

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> ImapConfig:
        title = type(self).__name__
        if tls_problem := check_tls(self, info):
            raise fail(title, *tls_problem)
        if self.auth == "login":
            require_secret(self, "password", "auth: login logs in with a password")
        else:
            require_secret(self, "oauth2_token", "auth: xoauth2 logs in with an access token")
        if self.security == "none" and not is_loopback(self.host):
            raise fail(
                title,
                ("security",),
                "security: none would send the password in clear"
                " text; use tls or starttls (none is allowed for localhost only)",
            )
        if self.processed == "move" and not self.processed_folder:
            raise fail(title, ("processed_folder",), "processed: move needs processed_folder")
        return self


class SmtpConfig(Section):
    """How replies to customers are sent."""

    host: str = Field(min_length=1, description="SMTP server host name.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587 submission, 465 tls).")
    security: Security = Field(
        "starttls",
        description="`starttls`, `tls` (implicit TLS) or `none` (localhost only).",
    )
    verify_certificate: bool = Field(True, description=_VERIFY_DOC)
    ca_file: Path | None = Field(None, description=_CA_FILE_DOC)
    username: str | None = Field(None, description="Login name (null: no authentication).")
    password: Secret | None = Field(
        None,
        description="Password for `username` (from `password_file`: re-read on every login).",
    )
    from_address: EmailAddress = Field(
        description="Address replies are sent from (usually the mailbox's own).",
    )
    from_name: str | None = Field(None, description="Display name of the sender.")
    reply_to_tokens: bool = Field(
        True,
        description="Put the conversation token in the Reply-To address as a plus-address"
        " (`support+ref@example.com`); turn off if your server does not deliver"
        " plus-addresses to the mailbox.",
    )
    timeout: Duration = Field(
        timedelta(seconds=60),
        description="How long one SMTP exchange may take before it is retried later.",
    )

    @model_validator(mode="after")
    def _credentials(self, info: ValidationInfo) -> SmtpConfig:
        title = type(self).__name__
        if tls_problem := check_tls(self, info):
            raise fail(title, *tls_problem)
        if self.username is not None:
            require_secret(self, "password", "username is set")
        if self.security == "none" and self.username is not None and not is_loopback(self.host):
            raise fail(
                title,
                ("security",),
                "security: none would send the password in clear"
                " text; use tls or starttls (none is allowed for localhost only)",
            )
        return self


class AgentMailConfig(Section):
    """Agents whose tool is their own mailbox: notifications out, their replies back in."""

    reply_address: EmailAddress | None = Field(
        None,
        description="Address agents reply to; each notification's Reply-To is its"
        " plus-address carrying the signed conversation token"
        " (`support+<token>@example.com`). Mail to it must reach this IMAP account"
        " (null: `smtp.from_address`, the support mailbox itself). Its local part"
        f" may be at most {MAX_REPLY_LOCAL} characters, so that local part, `+` and the"
        " 50-character token fit the 64 characters SMTP allows.",
    )
    folder: str | None = Field(
        None,
        description="A second folder of this account to read agents' replies from, when"
        " a server rule files them apart (null: they arrive in `imap.folder` with"
        " customer mail and are told apart by the address they were sent to).",
    )
    from_name: str = Field(
        "omnirouter",
        min_length=1,
        description="Display name on notifications to agents (the address is `smtp.from_address`).",
    )


class EmailLimits(Section):
    """Tolerance limits for incoming mail (every one has a reason in the DLQ or the envelope)."""

    max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest message taken in; larger ones are dead-lettered unread.",
    )
    max_header_bytes: int = Field(
        256 * 1024,
        ge=1024,
        description="Largest header block; a message with more is dead-lettered.",
    )
    max_header_fields: int = Field(
        1000,
        ge=10,
        description="Most header fields in the message's header; a message with more is"
        " dead-lettered.",
    )
    max_header_field_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Longest header field (its folded lines together) in the message's header,"
        " or any Content-Type, Content-Disposition or address field in its parts; a message"
        " with a longer one is dead-lettered.",
    )
    max_header_params: int = Field(
        50,
        ge=5,
        description="Most parameters (`;`) in one Content-Type or Content-Disposition field,"
        " in any part; a message with more is dead-lettered unparsed (the parser is"
        " quadratic in them).",
    )
    max_addresses: int = Field(
        1000,
        ge=10,
        description="Most addresses (`@`) in one address field (From, To, Cc, ...); a message"
        " with more is dead-lettered unparsed.",
    )
    max_encoded_words: int = Field(
        1000,
        ge=10,
        description="Most RFC 2047 encoded words (`=?`) in one address field; a message with"
        " more is dead-lettered unparsed.",
    )
    max_parts: int = Field(
        500,
        ge=1,
        description="MIME parts looked at; the rest are recorded as skipped. A message with"
        " more than twice as many MIME boundary lines is dead-lettered unparsed.",
    )
    max_depth: int = Field(
        20,
        ge=1,
        le=100,
        description="Deepest MIME nesting looked at; deeper parts are recorded as skipped."
        " A message nested more than 100 deep is dead-lettered unparsed.",
    )
    max_html_depth: int = Field(
        500,
        ge=10,
        description="Deepest element nesting of an HTML body; a deeper one is not read or"
        " shown as the body but kept as an attachment, with the reason in"
        " `meta.skipped_parts` (sanitizing slows down with the nesting).",
    )
    cpu_seconds: float = Field(
        1.0,
        gt=0,
        description="CPU time normalizing one message may take, plus `cpu_seconds_per_mib`"
        " for each MiB of it; a message over it is dead-lettered with the reason.",
    )
    cpu_seconds_per_mib: float = Field(
        0.1,
        ge=0,
        description="Extra CPU time per MiB of a message (decoding a large attachment"
        " takes about 0.04 s per MiB).",
    )
    max_text_chars: int = Field(
        1_000_000,
        ge=1000,
        description="Longest text or HTML body kept in the envelope; the rest is cut"
        " and `meta.truncated` is set (the full message stays on the IMAP server).",
    )


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
        description="Largest attachment kept; larger ones are recorded in the envelope"
        " as skipped, with the reason (null: `blobs.max_attachment_bytes`).",
    )
    limits: EmailLimits = Field(
        default_factory=EmailLimits,
        description="How much malformed or absurd mail is tolerated before a message"
        " is dead-lettered (or a part skipped) with the reason.",
    )
    agents: AgentMailConfig = Field(
        default_factory=AgentMailConfig,
        description="Agents who work from their mailbox (agents with an `email` sink"
        " on this channel).",
    )
    auto_reply_window: Duration = Field(
        timedelta(hours=1),
        description="At most one automatic message (acknowledgement, notice) per"
        " customer address in this window; more are suppressed.",
    )
    seen_retention: Duration = Field(
        timedelta(days=90),
        description="How long the marker of a taken-in message is kept (pruned hourly)."
        " It skips a message met again, e.g. when a recreated folder is resynced; an"
        " older message met again goes to the router, which drops it as processed.",
    )

    @property
    def agent_reply_address(self) -> str:
        """Where agents' replies go (before the `+token`)."""
        return self.agents.reply_address or self.smtp.from_address

    @model_validator(mode="after")
    def _reply_address_fits(self) -> EmailChannelConfig:
        local = self.agent_reply_address.partition("@")[0]
        if "+" in local:
            raise fail(
                type(self).__name__,
                ("agents", "reply_address"),
                "the agent reply address must not contain '+': the token is added after it",
            )
        if len(local) > MAX_REPLY_LOCAL:
            where = "agents.reply_address" if self.agents.reply_address else "smtp.from_address"
            raise fail(
                type(self).__name__,
                ("agents", "reply_address"),
                f"{where} {self.agent_reply_address!r} is the agents' reply address; its"
                f" part before the @ has {len(local)} characters, and with '+' and the"
                f" {TOKEN_CHARS}-character conversation token it would pass the 64"
                " characters SMTP allows: set agents.reply_address to an alias of this"
                f" mailbox with at most {MAX_REPLY_LOCAL} characters before the @",
            )
        return self
