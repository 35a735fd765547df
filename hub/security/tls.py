"""TLS for HTTP and for DICOM (PS3.15 Annex B secure transport connection profiles)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2  # for HTTP and DICOM, as server and as client


def http_ssl_context(cert: Path | str, key: Path | str) -> ssl.SSLContext:
    """Server context for the web and DICOMweb port: TLS 1.2+, the library's safe ciphers."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class _HandshakeOnFirstRead(ssl.SSLContext):
    """pynetdicom wraps each accepted socket in its one accepting thread. With the handshake
    done there, a peer that connects and stays silent kept every other peer of the port waiting
    for the network timeout (60 s), and could do so again and again. Deferred, the handshake
    happens in the connection's own thread on its first read, under the SCP's setup deadline."""

    def wrap_socket(self, sock, *args, **kwargs):  # type: ignore[override]
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def dicom_tls_context(
    cert: Path | str, key: Path | str, ca: Path | str | None = None
) -> ssl.SSLContext:
    """Server context for the DIMSE port (pass as ``ssl_context`` to pynetdicom).

    With ``ca`` the peer must present a certificate issued by it (mutual TLS, as the DICOM
    BCP 195 profiles expect between nodes); without it, the link is encrypted and the AE
    allow-list decides who may do what.
    """
    ctx = _HandshakeOnFirstRead(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.load_cert_chain(str(cert), str(key))
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def dicom_tls_client_context(
    ca: Path | str | None = None,
    cert: Path | str | None = None,
    key: Path | str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """Client context for associations the hub opens (C-MOVE, forwarding): the peer must
    present a certificate from ``ca`` (the system's CAs if None) unless ``verify`` is off;
    ``cert``/``key`` identify the hub for mutual TLS.

    Pass to pynetdicom as ``tls_args=(context, peer_hostname)``.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    ctx.minimum_version = MINIMUM_VERSION
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class ClientTls:
    """TLS towards one DICOM peer, as configured (forwarding targets, C-MOVE destinations)."""

    ca_file: str | None = None  # verify the peer against this CA (system CAs if None)
    cert_file: str | None = None  # our client certificate, for peers that require one
    key_file: str | None = None
    verify: bool = True  # check the peer's certificate and host name

    @classmethod
    def from_setting(cls, value: object) -> ClientTls | None:
        """``true`` (defaults), a dict of the fields, or absent/false (no TLS)."""
        if isinstance(value, dict):
            return cls(**value)
        return cls() if value else None

    def pynetdicom_args(self, host: str) -> tuple[ssl.SSLContext, str | None]:
        ctx = dicom_tls_client_context(self.ca_file, self.cert_file, self.key_file, self.verify)
        return ctx, host if self.verify else None


def make_self_signed(directory: Path | str, hostname: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for localhost, reused while it has a month left to run."""
    directory = Path(directory)
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    if cert_path.exists() and key_path.exists() and _still_valid(cert_path, days=30):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        # A self-signed certificate is its own trust anchor, so it is marked as a CA that
        # can sign nothing below it; clients then accept it when told to trust this file.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _still_valid(cert_path: Path, days: int) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
