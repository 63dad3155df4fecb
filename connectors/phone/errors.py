"""The phone connector's errors: all `ConnectorError`s.

- `BadCall`: a CDR row, call event or callback that is not a call we can log
  (the caller's number withheld, a field of the wrong shape); the message names
  the field. Never retriable: the row is dead-lettered, the request answered 400.
- `BadSignature` (the kit's): a call event or Twilio callback not signed with
  the channel's key, stale or replayed (401).
- `CdrFileError`: the CDR file cannot be read (retriable: the runner reconnects).
"""

from __future__ import annotations

from router.connector.signing import BadSignature
from router.errors import ConnectorError

__all__ = ["BadCall", "BadSignature", "CdrFileError", "PhoneError"]


class PhoneError(ConnectorError):
    """Root of the phone connector's errors."""

    retriable = False


class BadCall(PhoneError):
    """Not a call we can log; the message names the field."""


class CdrFileError(PhoneError):
    """The CDR file cannot be read right now."""

    retriable = True
