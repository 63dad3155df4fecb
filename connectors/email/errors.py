"""The email connector's errors: all `ConnectorError`s, so the daemon can act on them.

- `MalformedMessage`: this one message cannot be normalized (never retriable:
  it is dead-lettered with the reason and its raw blob reference).
- `ImapError`: the mailbox could not be reached, logged into or read
  (retriable unless the server refused the login or the folder).
- `SmtpError`: raised only for configuration mistakes found while sending;
  delivery outcomes are `SendResult`s, not exceptions.
- `TlsSetupError`: the TLS settings cannot be used (an unreadable or invalid
  `ca_file`); never retriable.

`retriable` is what the daemon acts on: a retriable error is retried with
backoff; any other stops the channel's reconnect attempts and reports it down
with the reason (`router.channels`).
"""

from __future__ import annotations

from router.errors import ConnectorError


class EmailError(ConnectorError):
    """Root of the email connector's errors."""


class MalformedMessage(EmailError):
    """A message that cannot be turned into an envelope; the reason says why."""

    retriable = False


class ImapError(EmailError):
    """The IMAP side failed: connection, TLS, login, folder or protocol."""

    retriable = True


class SmtpError(EmailError):
    """The SMTP side is misconfigured (the envelope cannot be turned into a message)."""

    retriable = False


class TlsSetupError(EmailError):
    """The TLS context cannot be built (an unreadable or invalid `ca_file`)."""

    retriable = False
