"""TLS for the proxy endpoints: a CA of Borealis's own, made on first start, and server certificates it signs.

Clients verify a proxy as they verify RDS Proxy (``sslmode=verify-full``), except that the root to trust is
``DATA_DIR/ca/root.crt`` instead of Amazon's bundle. The CA's key (``root.key``, mode 0600) stays in the data
directory so the CA outlives restarts: a client configured once keeps working. Server certificates are cheap
(ECDSA P-256), so each endpoint gets a fresh one when its listener starts, with the endpoint's host string,
127.0.0.1 and localhost as subject alternative names; they are written beside the CA only because
:meth:`ssl.SSLContext.load_cert_chain` reads files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "server_context"]

_CA_DAYS = 3650
_SERVER_DAYS = 397  # the longest validity browsers and Apple's TLS policy accept for server certificates


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only, replacing ``path`` atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 at least) from a certificate and its key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class CertificateAuthority:
    """The proxy's CA in ``directory`` (``root.crt`` + ``root.key``) and the TLS contexts of its endpoints."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "root.crt"
        self.key_path = directory / "root.key"
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert: x509.Certificate | None = None

    def ensure(self) -> None:
        """Load the CA, or make it on first use."""
        if self._cert is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        if self.cert_path.exists() and self.key_path.exists():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_path} is not an EC private key")
            self._key = key
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Borealis"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Borealis proxy CA {socket.gethostname()}"[:64]),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        # Key first: a crash between the two writes leaves no certificate without its key.
        _write_private(
            self.key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key, self._cert = key, cert

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context for an endpoint whose host string is ``host`` (made once per host)."""
        ctx = self._contexts.get(host)
        if ctx is None:
            self.ensure()
            ctx = server_context(*self._issue(host))
            # PostgreSQL 17's ALPN name: libpq 17+ offers it, and requires it with sslnegotiation=direct.
            ctx.set_alpn_protocols(["postgresql"])
            self._contexts[host] = ctx
        return ctx

    def issue(self, host: str, stem: str) -> tuple[Path, Path]:
        """Sign a server certificate for ``host`` into ``<stem>.crt`` and ``<stem>.key`` beside the CA.

        For servers other than the endpoints (the HTTP API's ``--tls``), whose processes load the files.
        """
        self.ensure()
        return self._issue(host, stem)

    def _issue(self, host: str, stem: str | None = None) -> tuple[Path, Path]:
        assert self._key is not None and self._cert is not None
        names = [host, "127.0.0.1", "localhost", "::1"]
        if host in ("0.0.0.0", "::"):
            # Bound to every interface: clients reach it by the machine's name.
            names.append(socket.gethostname())
        sans: list[x509.GeneralName] = []
        for name in dict.fromkeys(names):
            sans.append(_san(name))
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = stem or "endpoint-" + hashlib.sha256(host.encode()).hexdigest()[:12]
        key_file = self.directory / f"{stem}.key"
        cert_file = self.directory / f"{stem}.crt"
        _write_private(
            key_file,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_file, key_file
