"""Helpers of the HL7 tests: the whole hub with its MLLP listener and DIMSE SCP on loopback, and a
raw MLLP peer."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import hl7
import pytest
from hubtest import HubServer, running_hub
from sqlalchemy import select

from hub.config import Hl7Settings, Settings
from hub.hl7.mllp import frame
from hub.hl7.service import HL7_KEY
from hub.security.audit_trail import _logs
from hub.security.dimse_acl import allow_ae
from hub.security.tables import audit_log


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[HubServer]:
    settings = dataclasses.replace(
        settings, dimse_port=0, hl7=Hl7Settings(port=0, max_message_bytes=64 * 1024)
    )
    async with running_hub(settings) as server:
        await allow_ae(server.archive.engine, "FINDSCU", ["worklist"], role="admin")
        yield server


def hl7_port(hub: HubServer) -> int:
    return hub.app[HL7_KEY].listener.port


class Peer:
    """A RIS's end of one MLLP connection, on a raw socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, text: str) -> hl7.Message:
        """Send one message (segments one a line) and read its ACK."""
        await self.send_bytes(frame(text.strip().replace("\n", "\r").encode()))
        return await self.ack()

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ack(self) -> hl7.Message:
        block = await asyncio.wait_for(self.reader.readuntil(b"\x1c\r"), 30)
        assert block[:1] == b"\x0b"
        return hl7.parse(block[1:-2].decode())

    async def closed_by_hub(self) -> bool:
        """Whether the hub closes the connection (reading gives EOF, not an ACK)."""
        try:
            return await asyncio.wait_for(self.reader.read(), 30) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def peer(hub: HubServer) -> AsyncIterator[Peer]:
    reader, writer = await asyncio.open_connection("127.0.0.1", hl7_port(hub))
    p = Peer(reader, writer)
    yield p
    await p.close()


def msa(ack: hl7.Message) -> tuple[str, str, str]:
    """MSA-1 acknowledgement code, MSA-2 the control ID it answers, MSA-3 its text."""
    seg = ack.segment("MSA")
    return str(seg(1)), str(seg(2)), ack.unescape(str(seg(3))) if len(seg) > 3 else ""


async def audited(hub: HubServer, action: str) -> list:
    engine = hub.archive.engine
    await _logs[engine].flush()
    async with engine.connect() as conn:
        return (await conn.execute(select(audit_log).where(audit_log.c.action == action))).all()


async def worklist(hub: HubServer, **params: str) -> list[dict]:
    async with hub.session() as http, http.get(hub.url + "/api/worklist", params=params) as resp:
        assert resp.status == 200
        return (await resp.json())["items"]


def orm(control: str = "NW", control_id: str = "MSG1", placer: str = "PL100", **extra: str) -> str:
    """An ORM^O01 (v2.3.1, as IHE RAD-4) for a hip ultrasound; ``extra`` adds segments."""
    segments = [
        f"MSH|^~\\&|RIS|HOSP|TESSERA|HUB|20261128080000||ORM^O01|{control_id}|P|2.3.1",
        "PID|||P7^^^HOSP^MR||DOE^BABY^^^||20260601|F",
        "PV1||O||||||^SMITH^JOHN^^^DR",
        f"ORC|{control}|{placer}^RIS|FL-{placer}^RIS||SC||^^^20261128093000",
        f"OBR|1|{placer}^RIS|FL-{placer}^RIS|HIPUS^Hip ultrasound^99T^HIP-1^Hip protocol^99T"
        "||||||||||||^JONES^ANN||ACC-" + placer + "|RP-" + placer + "|SPS-" + placer + "||||US",
        *extra.values(),
    ]
    return "\n".join(segments)
