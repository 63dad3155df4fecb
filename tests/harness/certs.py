"""Throwaway certificates for TLS tests: a test CA, server certificates, a second CA.

Fixture `test_ca` (session): a `TestPki` made once per test session in a temp
directory (deleted at the end; nothing here is ever committed):

- `ca_file`: the test CA's certificate (PEM), what a client is told to trust;
- `server`: a certificate and key for `localhost`, `127.0.0.1` and `127.0.0.2`
  signed by the test CA (servers in the harness present it);
- `other_ca_file`: a second, unrelated CA: a client that trusts only it must
  refuse every server above;
- `issue(name, *hosts)`: one more server certificate from the test CA, e.g. for
  a name the client does not connect to (hostname checks).

Keys are EC P-256 (fast to make) and the certificates carry the extensions
strict verifiers require (basic constraints, key usage, key identifiers).
`server_context(cert)` and `client_context(ca)` build `ssl.SSLContext`s for
harness servers and for the tests' own independent clients.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_HOSTS = ("localhost", "127.0.0.1", "127.0.0.2")


@dataclass(frozen=True)
class CertFiles:
    cert: Path  # PEM certificate
    key: Path  # PEM private key (mode 0600)


class _Authority:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        public = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, *hosts: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = datetime.now(UTC)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return path


class TestPki:
    """The session's test CA, its server certificate and an unrelated second CA."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ca = _Authority("omnirouter test CA")
        self.ca_file = _write_cert(root / "ca.pem", self._ca.cert)
        self.other_ca_file = _write_cert(root / "other-ca.pem", _Authority("unrelated CA").cert)
        self._issued = 0
        self.server = self.issue(*SERVER_HOSTS)

    def issue(self, *hosts: str) -> CertFiles:
        """A new certificate and key for `hosts`, signed by the test CA."""
        self._issued += 1
        cert, key = self._ca.issue(*hosts)
        stem = f"server{self._issued}"
        return CertFiles(
            cert=_write_cert(self.root / f"{stem}.pem", cert),
            key=_write_key(self.root / f"{stem}.key", key),
        )


def server_context(files: CertFiles) -> ssl.SSLContext:
    """A server-side context presenting `files` (for harness servers)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A verifying client context trusting only `ca_file` (for the tests' own clients)."""
    return ssl.create_default_context(cafile=str(ca_file))


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestPki]:
    root = Path(tempfile.mkdtemp(prefix="omnirouter-pki-"))
    root.chmod(0o755)  # Dovecot's config reader may run as another user
    try:
        yield TestPki(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
