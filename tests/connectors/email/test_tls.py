"""TLS against real servers: Dovecot with `ssl = required`, aiosmtpd with STARTTLS and TLS.

The servers present a certificate from the session's throwaway test CA
(`tests.harness.certs`); the connector trusts it through `ca_file`. Each
"works" test has a twin that must fail: a client trusting another CA (or the
system store) is refused with a clear connector error, a plaintext login is
refused by the server, so a passing STARTTLS test means STARTTLS happened.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from connectors.email.connector import EmailConnector
from connectors.email.errors import ImapError
from connectors.email.tls import client_context
from router.connector.testing import MemoryCheckpoints
from tests.connectors.email.helpers import (
    connector,
    email_config,
    ids,
    mail,
    reply,
    sender_for,
    stop,
    take,
)
from tests.harness.certs import TestPki
from tests.harness.dovecot import Dovecot, ImapAccount
from tests.harness.smtp import CapturingSmtp, start_smtp

# --- IMAP against Dovecot with ssl = required -------------------------------------------


def tls_connector(account: ImapAccount, tmp: Path, security: str, **imap: Any) -> EmailConnector:
    """A connector on the TLS-requiring server over `security`, trusting the test CA."""
    assert account.tls_port is not None
    port = account.tls_port if security == "tls" else account.port
    settings: dict[str, Any] = {"security": security, "port": port, "ca_file": account.ca_file}
    return connector(account, tmp, MemoryCheckpoints(), **{**settings, **imap})


@pytest.mark.imap
async def test_imap_intake_over_implicit_tls(
    imap_tls_account: ImapAccount, dovecot_tls: Dovecot, tmp_path: Path
):
    imap_tls_account.append(mail(1))
    conn = tls_connector(imap_tls_account, tmp_path, "tls")
    await conn.start()
    gen = conn.receive()
    try:
        assert ids(await take(gen, 1)) == ["<m1@example.net>"]
    finally:
        await gen.aclose()
        await conn.stop()
    # helper append + connector: every session Dovecot saw for this user was TLS
    logins = dovecot_tls.logins(imap_tls_account.username, at_least=2)
    assert len(logins) == 2 and all(", TLS," in line for line in logins), logins


@pytest.mark.imap
async def test_imap_intake_over_starttls_including_idle(
    imap_tls_account: ImapAccount, dovecot_tls: Dovecot, tmp_path: Path
):
    imap_tls_account.append(mail(1))
    conn = tls_connector(imap_tls_account, tmp_path, "starttls")
    await conn.start()
    gen = conn.receive()
    try:
        assert ids(await take(gen, 1)) == ["<m1@example.net>"]
        waiting = asyncio.ensure_future(take(gen, 1))
        await asyncio.sleep(0.5)  # in IDLE now, on the upgraded connection
        await asyncio.to_thread(imap_tls_account.append, mail(2))
        assert ids(await waiting) == ["<m2@example.net>"]
        await stop(asyncio.ensure_future(take(gen, 1)))
    finally:
        await gen.aclose()
        await conn.stop()
    # two helper appends (implicit TLS) and the connector (plain port, then STARTTLS):
    # Dovecot logged every one of these sessions as TLS. That the plain port takes no
    # login without STARTTLS is the next test.
    logins = dovecot_tls.logins(imap_tls_account.username, at_least=3)
    assert len(logins) == 3 and all(", TLS," in line for line in logins), logins


@pytest.mark.imap
async def test_plaintext_login_is_refused_by_the_server(
    imap_tls_account: ImapAccount, tmp_path: Path
):
    """With `ssl = required` Dovecot refuses a plaintext login (so the STARTTLS tests are
    real), and our `security: none` client does not even send the password."""
    # what Dovecot announces on the plain port before STARTTLS, and does
    with imaplib.IMAP4(imap_tls_account.host, imap_tls_account.port, timeout=10) as raw:
        assert {"STARTTLS", "LOGINDISABLED"} <= set(raw.capabilities)
        with pytest.raises(imaplib.IMAP4.error, match=r"PRIVACYREQUIRED"):
            raw.login(imap_tls_account.username, imap_tls_account.password)
    conn = connector(imap_tls_account, tmp_path, MemoryCheckpoints(), security="none")
    with pytest.raises(ImapError, match=r"does not accept a password without TLS") as info:
        await conn.start()
    await conn.stop()
    assert info.value.retriable is False


@pytest.mark.imap
@pytest.mark.parametrize("security", ["tls", "starttls"])
@pytest.mark.parametrize("trust", ["other CA", "system store"])
async def test_imap_untrusted_certificate_is_a_clear_error(
    imap_tls_account: ImapAccount, test_ca: TestPki, tmp_path: Path, security: str, trust: str
):
    ca_file = test_ca.other_ca_file if trust == "other CA" else None
    conn = tls_connector(imap_tls_account, tmp_path, security, ca_file=ca_file)
    port = imap_tls_account.tls_port if security == "tls" else imap_tls_account.port
    started = time.monotonic()
    with pytest.raises(ImapError) as info:
        await conn.start()
    # the intake's own loop does not retry it either: the daemon's backoff takes over
    gen = conn.receive()
    with pytest.raises(ImapError) as again:
        await anext(gen)
    await gen.aclose()
    await conn.stop()
    assert time.monotonic() - started < 5  # refused at the handshake, not a timeout
    message = str(info.value)
    assert message.startswith(f"TLS certificate of 127.0.0.2:{port} was not accepted:")
    assert "unable to get local issuer certificate" in message
    if ca_file is not None:
        assert f"trusted: the CA certificates in ca_file {ca_file}" in message
    else:
        assert "the system trust store (set ca_file to trust a private CA)" in message
    assert "Traceback" not in message
    assert info.value.retriable is False
    assert str(again.value) == message
    assert isinstance(info.value.__cause__, OSError)  # the ssl error stays as the cause


@pytest.mark.imap
async def test_imap_xoauth2_login_checked_by_the_server(
    imap_tls_account: ImapAccount, dovecot_tls: Dovecot, tmp_path: Path
):
    token = imap_tls_account.oauth2_token
    assert token
    imap_tls_account.append(mail(1))
    conn = tls_connector(
        imap_tls_account, tmp_path, "tls", auth="xoauth2", oauth2_token=token, password=None
    )
    gen = conn.receive()
    try:
        assert ids(await take(gen, 1)) == ["<m1@example.net>"]
    finally:
        await gen.aclose()
        await conn.stop()
    assert dovecot_tls.introspection is not None
    assert token in dovecot_tls.introspection.asked  # Dovecot asked about this very token
    assert any("method=XOAUTH2" in line for line in dovecot_tls.logins(imap_tls_account.username))


@pytest.mark.imap
async def test_imap_xoauth2_wrong_token_is_refused(imap_tls_account: ImapAccount, tmp_path: Path):
    conn = tls_connector(
        imap_tls_account, tmp_path, "tls", auth="xoauth2", oauth2_token="forged", password=None
    )
    started = time.monotonic()
    with pytest.raises(ImapError, match=r"login .* refused") as info:
        await conn.start()
    await conn.stop()
    assert time.monotonic() - started < 5  # the server's error challenge was answered
    assert info.value.retriable is False
    message = str(info.value)
    assert "NO [AUTHENTICATIONFAILED]" in message
    assert 'the server\'s token error: {"status":"401"' in message  # the decoded JSON
    assert "forged" not in message  # the token itself is never repeated


# --- SMTP against aiosmtpd with STARTTLS and implicit TLS ------------------------------


async def test_smtp_send_over_starttls(smtp_starttls_server: CapturingSmtp):
    server = smtp_starttls_server
    result = await sender_for(server, security="starttls", ca_file=server.ca_file).send(reply())
    assert result.status == "sent", result.detail
    [got] = server.messages
    assert got.tls is not None and got.tls.startswith("TLS")
    assert got.message["Message-ID"] == result.native_id


async def test_smtp_send_over_implicit_tls(smtp_tls_server: CapturingSmtp):
    server = smtp_tls_server
    result = await sender_for(server, security="tls", ca_file=server.ca_file).send(reply())
    assert result.status == "sent", result.detail
    [got] = server.messages
    assert got.tls is not None and got.tls.startswith("TLS")


@pytest.mark.parametrize("security", ["starttls", "tls"])
@pytest.mark.parametrize("trust", ["other CA", "system store"])
async def test_smtp_untrusted_certificate_is_retried_with_a_clear_reason(
    test_ca: TestPki, security: str, trust: str
):
    ca_file = test_ca.other_ca_file if trust == "other CA" else None
    with start_smtp(security, test_ca.server, test_ca.ca_file) as server:
        started = time.monotonic()
        result = await sender_for(server, security=security, ca_file=ca_file).send(reply())
        assert time.monotonic() - started < 5
        assert server.messages == []
    assert result.status == "retry"  # the message is fine: keep it until TLS is fixed
    assert result.detail.startswith(f"TLS certificate of 127.0.0.1:{server.port} was not accepted:")
    assert "unable to get local issuer certificate" in result.detail
    if ca_file is not None:
        assert f"trusted: the CA certificates in ca_file {ca_file}" in result.detail
    else:
        assert "trusted: the system trust store (set ca_file" in result.detail


async def test_smtp_certificate_for_another_name_is_refused(test_ca: TestPki):
    """With ca_file the host name is still checked: a trusted CA is not enough."""
    elsewhere = test_ca.issue("mail.other.example")
    with start_smtp("tls", elsewhere, test_ca.ca_file) as server:
        result = await sender_for(server, security="tls", ca_file=test_ca.ca_file).send(reply())
        assert server.messages == []
    assert result.status == "retry"
    assert "was not accepted" in result.detail and "mismatch" in result.detail


# --- configuration ----------------------------------------------------------------------


def test_ca_file_must_be_a_readable_pem_bundle(tmp_path: Path, test_ca: TestPki):
    assert email_config(imap={"security": "tls", "ca_file": str(test_ca.ca_file)}).imap.ca_file
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValidationError, match=f"cannot use ca_file {missing}: No such file"):
        email_config(imap={"security": "tls", "ca_file": str(missing)})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match=r"cannot use ca_file .*junk\.pem") as info:
        email_config(smtp={"security": "starttls", "ca_file": str(junk)})
    assert info.value.errors()[0]["loc"] == ("smtp", "ca_file")


def test_ca_file_needs_tls_and_verification(test_ca: TestPki):
    ca = str(test_ca.ca_file)
    with pytest.raises(ValidationError, match="ca_file is used only with security: tls"):
        email_config(imap={"security": "none", "ca_file": ca})
    with pytest.raises(ValidationError, match="verify_certificate: false ignores ca_file"):
        email_config(smtp={"security": "tls", "ca_file": ca, "verify_certificate": False})


def test_security_none_only_on_loopback():
    assert email_config(imap={"host": "127.0.0.2"}).imap.host == "127.0.0.2"
    with pytest.raises(ValidationError, match="security: none would send the password"):
        email_config(imap={"host": "mail.example.net"})


def test_turning_verification_off_is_never_silent():
    with capture_logs() as logs:
        ctx = client_context(None, verify=False, what="imap mail.example.net:993")
    assert ctx.verify_mode == ssl.CERT_NONE
    [entry] = logs
    assert entry["log_level"] == "warning" and "verification is off" in entry["event"]
    assert entry["server"] == "imap mail.example.net:993"
    with capture_logs() as logs:
        ctx = client_context(None)
    assert logs == [] and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_a_session_still_open_when_the_test_server_stops_leaks_no_socket(test_ca: TestPki):
    """CI once failed on an unclosed socket and transport after the implicit-TLS test: on a
    busy machine the server had not yet seen the client's QUIT when the test stopped it,
    and aiosmtpd's controller left the live session to the garbage collector. The
    harness's controller closes such sessions; a client that never hangs up shows it."""
    import gc
    import socket
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with start_smtp("tls", test_ca.server, test_ca.ca_file) as server:
            context = ssl.create_default_context(cafile=str(test_ca.ca_file))
            raw = socket.create_connection((server.host, server.port))
            client = context.wrap_socket(raw, server_hostname=server.host)
            assert client.recv(1024).startswith(b"220")
        client.close()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
