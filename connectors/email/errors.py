"""The email connector's errors: all `ConnectorError`s, so the daemon can act on them.

- `MalformedMessage`: this one message cannot be normalized (never retriable:
  it is dead-lettered with the reason and its raw blob reference).
- `ImapError`: the mailbox could not be reached, logged into or read
  (retriable unless the server refused the login or the folder).
- `OutboundError`: an outbound envelope that cannot be made into an email
  (`outbound`); never retriable: the connector answers `failed` with the
  reason. Delivery outcomes are `SendResult`s, not exceptions.
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


class OutboundError(EmailError):
    """The envelope does not follow the outbound email convention."""

    retriable = False


class TlsSetupError(EmailError):
    """The TLS context cannot be built (an unreadable or invalid `ca_file`)."""

    retriable = False
