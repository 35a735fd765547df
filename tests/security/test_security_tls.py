"""TLS: HTTPS with the self-signed demo certificate, and DICOM TLS with mutual certificates."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from security_support import PASSWORD, gated_app

from hub.security import (
    dicom_tls_client_context,
    dicom_tls_context,
    http_ssl_context,
    make_self_signed,
)
from hub.security.accounts import create_user


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def https_gate(engine, tmp_path: Path):
    cert, key = make_self_signed(tmp_path / "tls")
    app = gated_app(engine, tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=http_ssl_context(cert, key))
    await site.start()
    await create_user(engine, "tls-user", "clinic", PASSWORD)
    yield port, cert
    await runner.cleanup()


def test_self_signed_certificate_is_reused_and_its_key_private(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = cert.read_bytes()
    assert make_self_signed(tmp_path) == (cert, key)
    assert cert.read_bytes() == before
    parsed = x509.load_pem_x509_certificate(before)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)


async def test_https_handshake_from_aiohttp_client(https_gate) -> None:
    port, cert = https_gate
    trust = ssl.create_default_context(cafile=str(cert))
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(f"https://localhost:{port}/login", ssl=trust) as resp:
            assert resp.status == 200
            assert resp.connection.transport.get_extra_info("ssl_object").version() in (
                "TLSv1.2",
                "TLSv1.3",
            )
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        async with session.post(
            f"https://127.0.0.1:{port}/api/login",
            json={"username": "tls-user", "password": PASSWORD},
            ssl=trust,
        ) as resp:
            assert resp.status == 200
            assert resp.cookies["tessera_session"]["secure"] is True
        # A client that does not trust the certificate must fail the handshake.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(f"https://localhost:{port}/login")


@pytest.mark.peers
async def test_https_handshake_from_openssl_s_client(https_gate) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    port, cert = https_gate
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-CAfile", str(cert), "-verify_return_error", "-brief",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Verification: OK" in text
    assert "Protocol version: TLSv1.3" in text


# -- DICOM TLS -------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(directory: Path, cn: str, issuer: tuple | None, *, ca: bool = False) -> tuple:
    """A key and certificate signed by ``issuer`` (cert, key) or self-signed when None."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer[0].subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{cn}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = _issue(tmp_path, "tessera-ca", None, ca=True)
    _issue(tmp_path, "server", ca)
    _issue(tmp_path, "modality", ca)
    _issue(tmp_path, "stranger", None)  # self-signed: not issued by the CA
    return tmp_path


@pytest.fixture
def tls_echo_scp(pki: Path):
    ae = AE(ae_title="TESSERA")
    ae.add_supported_context(Verification)
    ctx = dicom_tls_context(pki / "server.crt", pki / "server.key", pki / "tessera-ca.crt")
    port = _free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, ssl_context=ctx, evt_handlers=[(evt.EVT_C_ECHO, _ok)]
    )
    yield port
    server.shutdown()


def _ok(event) -> int:
    return 0x0000


def _client_context(pki: Path, who: str | None) -> ssl.SSLContext:
    if who is None:
        return dicom_tls_client_context(pki / "tessera-ca.crt")
    return dicom_tls_client_context(pki / "tessera-ca.crt", pki / f"{who}.crt", pki / f"{who}.key")


def test_dicom_tls_handshake_with_python_ssl(pki: Path, tls_echo_scp: int) -> None:
    ctx = _client_context(pki, "modality")
    with (
        socket.create_connection(("127.0.0.1", tls_echo_scp), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert()["subject"] == ((("commonName", "server"),),)


def _echo(pki: Path, port: int, who: str | None) -> bool:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="TESSERA", tls_args=(_client_context(pki, who), "localhost")
    )
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return status.Status == 0x0000


def test_dicom_tls_echo_needs_a_certificate_from_the_ca(pki: Path, tls_echo_scp: int) -> None:
    assert _echo(pki, tls_echo_scp, "modality")
    assert not _echo(pki, tls_echo_scp, None)
    assert not _echo(pki, tls_echo_scp, "stranger")


@pytest.mark.peers
def test_dicom_tls_echo_from_dcmtk(pki: Path, tls_echo_scp: int) -> None:
    if shutil.which("echoscu") is None:
        pytest.skip("dcmtk echoscu is not installed")
    run = subprocess.run(
        ["echoscu", "-aet", "MODALITY", "-aec", "TESSERA",
         "+tls", str(pki / "modality.key"), str(pki / "modality.crt"),
         "+cf", str(pki / "tessera-ca.crt"), "127.0.0.1", str(tls_echo_scp)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    refused = subprocess.run(
        ["echoscu", "-aet", "MODALITY", "-aec", "TESSERA", "+tls", str(pki / "stranger.key"),
         str(pki / "stranger.crt"), "+cf", str(pki / "tessera-ca.crt"), "127.0.0.1",
         str(tls_echo_scp)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0


def _fingerprint(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def _ca_of(pki: Path) -> tuple:
    cert = x509.load_pem_x509_certificate((pki / "tessera-ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki / "tessera-ca.key").read_bytes(), None)
    return cert, key


@pytest.mark.peers
async def test_storescu_over_tls_into_the_hub_dimse_scp(pki: Path, archive, settings) -> None:
    """dcmtk storescu +tls stores into the hub's own SCP, served with dicom_tls_context, as the
    AE bound to its client certificate; another certificate from the same CA is refused."""
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk storescu is not installed")
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from hub.dimse.config import DimseConfig
    from hub.dimse.service import DimseServer
    from hub.security.dimse_acl import allow_ae

    _issue(pki, "other-modality", _ca_of(pki))
    pinned = _fingerprint(pki / "modality.crt")
    await allow_ae(archive.engine, "MODALITY", ["store"], role="integration", certificate=pinned)
    settings.dimse_port = 0
    scp = DimseServer(archive, DimseConfig.from_settings(settings), asyncio.get_running_loop())
    ctx = dicom_tls_context(pki / "server.crt", pki / "server.key", pki / "tessera-ca.crt")
    server = scp.ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=scp.handlers, ssl_context=ctx
    )
    port = server.server_address[1]
    ct = get_testdata_file("CT_small.dcm")
    try:
        proc = await asyncio.create_subprocess_exec(
            "storescu", "-aet", "MODALITY", "-aec", settings.ae_title,
            "+tls", str(pki / "modality.key"), str(pki / "modality.crt"),
            "+cf", str(pki / "tessera-ca.crt"), "127.0.0.1", str(port), ct,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, out.decode()
        other = await asyncio.create_subprocess_exec(
            "storescu", "-v", "-aet", "MODALITY", "-aec", settings.ae_title,
            "+tls", str(pki / "other-modality.key"), str(pki / "other-modality.crt"),
            "+cf", str(pki / "tessera-ca.crt"), "127.0.0.1", str(port),
            get_testdata_file("MR_small.dcm"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(other.communicate(), 120)
        assert "Unknown Status: 0x124" in out.decode(), out.decode()  # Refused: Not Authorized
        plain = await asyncio.create_subprocess_exec(  # no TLS: the handshake never happens
            "storescu", "-to", "10", "-aet", "MODALITY", "-aec", settings.ae_title,
            "127.0.0.1", str(port), ct, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        await asyncio.wait_for(plain.communicate(), 120)
        assert plain.returncode != 0
    finally:
        await asyncio.to_thread(server.shutdown)
    ds = dcmread(ct, stop_before_pixels=True)
    (ref,) = await archive.instances(ds.StudyInstanceUID)
    assert ref.sop_instance_uid == ds.SOPInstanceUID
