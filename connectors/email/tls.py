"""TLS for IMAP and SMTP: one way to build the client context, one way to say why TLS failed.

The context always verifies the server: the certificate must chain to a
trusted CA (the system trust store, or the PEM bundle in `ca_file` for a
private CA) and name the host the connector connects to. The one exception
is the explicit `verify_certificate: false`, which is logged as a warning on
every connection, so it is never silent.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import structlog

from connectors.email.errors import TlsSetupError

__all__ = [
    "TlsSetupError",
    "check_ca_file",
    "client_context",
    "describe_tls_failure",
    "tls_failure",
]

log = structlog.get_logger(__name__)


def client_context(
    ca_file: Path | None, *, verify: bool = True, what: str = "server"
) -> ssl.SSLContext:
    """A client context trusting `ca_file` (None: the system trust store).

    `ca_file` is read on every call, so a replaced bundle is used from the next
    connection on. `verify=False` (the explicit `verify_certificate: false`)
    turns verification off and says so in the log; `what` names the server there.
    """
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)
        raise TlsSetupError(f"cannot use ca_file {ca_file}: {reason}") from exc
    if not verify:
        log.warning(
            "TLS certificate verification is off (verify_certificate: false): the"
            " connection can be read and changed by anyone on the path; trust a"
            " private CA with ca_file instead",
            server=what,
        )
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_ca_file(ca_file: Path) -> str | None:
    """Why `ca_file` cannot be used as a CA bundle, or None if it can."""
    try:
        client_context(ca_file)
    except TlsSetupError as exc:
        return str(exc)
    return None


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The `ssl.SSLError` behind `exc` (itself, or in its cause/context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_tls_failure(err: ssl.SSLError, host: str, port: int, ca_file: Path | None) -> str:
    """One line an operator can act on: which server, what was wrong, what was trusted."""
    if isinstance(err, ssl.SSLCertVerificationError):
        trusted = (
            f"the CA certificates in ca_file {ca_file}"
            if ca_file is not None
            else "the system trust store (set ca_file to trust a private CA)"
        )
        return (
            f"TLS certificate of {host}:{port} was not accepted:"
            f" {err.verify_message or _reason(err)}; trusted: {trusted}"
        )
    return f"TLS with {host}:{port} failed: {_reason(err)}"


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    text = str(err)
    if reason and reason not in text:
        return f"{reason}: {text}"
    return text or type(err).__name__
