"""A real coturn (the Debian ``coturn`` package's turnserver) on loopback for the TURN tests.

Foreground process, temp config: shared-secret auth (``use-auth-secret``, the TURN REST API
scheme), listening and relaying on 127.0.0.1 only, UDP and TCP on one port, TLS on another with
a self-signed certificate made for the test. Loopback peers are allowed, since both ends of
every relayed session here are on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import random
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioice import stun
from aiortc import RTCPeerConnection
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hubtest import free_port

from hub.security.tls import make_self_signed

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
REALM = "tessera.test"


@dataclass(frozen=True)
class Coturn:
    port: int  # UDP and TCP
    tls_port: int
    secret: str
    cert: Path
    log: Path

    def url(self, transport: str) -> str:
        """The W3C TURN URL for "udp", "tcp" or "tls"."""
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    @property
    def stun_url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    @property
    def spki_sha256(self) -> str:
        """Base64 SHA-256 of the certificate's public key (Chromium's certificate pin)."""
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def relay_settings(turn: Coturn, transport: str, secret: str | None = None) -> dict[str, Any]:
    """Telehealth settings: relay-only through ``turn`` over ``transport``, minting with
    ``secret`` (default: the one coturn shares)."""
    return {
        "stun_urls": [turn.stun_url],
        "turn_urls": [turn.url(transport)],
        "turn_secret": turn.secret if secret is None else secret,
        "ice_transport_policy": "relay",
    }


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str]:
    """(local, remote) candidate types of the pair ICE nominated (one bundled transport)."""
    ice = pc.getTransceivers()[0].receiver.transport.transport
    pair = ice._connection._nominated[1]  # aiortc exposes no candidate-pair stats
    return pair.local_candidate.type, pair.remote_candidate.type


def available() -> bool:
    return Path(TURNSERVER).exists()


@contextlib.asynccontextmanager
async def running_coturn(directory: Path) -> AsyncIterator[Coturn]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed(directory, hostname="localhost")
    # A relay range of its own, away from the ephemeral ports the kernel hands out.
    low = random.randrange(20000, 30000, 100)
    server = Coturn(free_port(), free_port(), secrets.token_hex(16), cert, directory / "turn.log")
    config = directory / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={server.port}",
                f"tls-listening-port={server.tls_port}",
                f"min-port={low}",
                f"max-port={low + 99}",
                "use-auth-secret",
                f"static-auth-secret={server.secret}",
                f"realm={REALM}",
                f"cert={cert}",
                f"pkey={key}",
                "allow-loopback-peers",
                "fingerprint",
                "no-cli",
                "no-dtls",
                "no-multicast-peers",
                f"userdb={directory / 'turndb'}",
                f"pidfile={directory / 'turnserver.pid'}",
                f"log-file={server.log}",
                "simple-log",
                "verbose",  # session lines, with the bytes each allocation relayed
                "",
            ]
        )
    )
    proc = await asyncio.create_subprocess_exec(
        TURNSERVER,
        "-c",
        str(config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _listening(proc, server)
        yield server
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _listening(proc: asyncio.subprocess.Process, server: Coturn, limit: float = 30) -> None:
    """Poll until the UDP listener answers a STUN binding request and both TCP ones accept."""
    async with asyncio.timeout(limit):
        while not await _stun_answers(server.port):
            if proc.returncode is not None:
                raise RuntimeError(f"turnserver exited: {server.log_text()[-2000:]}")
        for port in (server.port, server.tls_port):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"turnserver exited: {server.log_text()[-2000:]}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                await writer.wait_closed()
                break


async def _stun_answers(port: int, wait: float = 0.2) -> bool:
    loop = asyncio.get_running_loop()
    answered = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            if not answered.done():
                answered.set_result(stun.parse_message(data))

    transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=("127.0.0.1", port))
    try:
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transport.sendto(bytes(request))
        try:
            response = await asyncio.wait_for(answered, wait)
        except TimeoutError:
            return False
        return response.message_class == stun.Class.RESPONSE
    finally:
        transport.close()
