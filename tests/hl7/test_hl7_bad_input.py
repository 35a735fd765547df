"""Malformed and unwelcome HL7 input: each gets a NAK naming the reason, or a closed connection
and a log line; nothing of it is applied, and the listener goes on serving."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hl7_support import Peer, hl7_port, msa, orm, worklist

GOOD = orm()


async def _still_serving(hub) -> None:
    """A new connection still gets its order applied."""
    reader, writer = await asyncio.open_connection("127.0.0.1", hl7_port(hub))
    fresh = Peer(reader, writer)
    try:
        assert msa(await fresh.send(orm(placer="PL-AFTER", control_id="AFTER")))[0] == "AA"
    finally:
        await fresh.close()
    assert [i["accession"] for i in await worklist(hub)] == ["ACC-PL-AFTER"]


def _without(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("message", "code", "error", "reason"),
    [
        (_without(GOOD, "|MSG1|", "||"), "AR", "101", "MSH-10"),
        (_without(GOOD, "MSH|^~\\&|", "MSH|^~|"), "AR", "102", "encoding characters"),
        (_without(GOOD, "MSH|^~\\&|", "MSH|^^\\&|"), "AR", "102", "encoding characters"),
        (_without(GOOD, "ORM^O01", "ORU^R01"), "AR", "200", "ORU^R01 unsupported"),
        (_without(GOOD, "ORC|NW|", "ORC|RP|"), "AR", "103", "order control 'RP'"),
        ("PID|||P1", "AR", "100", "MSH"),
        (
            GOOD.replace("FL-PL100^RIS", "").replace("PL100^RIS", ""),
            "AR",
            "101",
            "order number",
        ),
        (_without(GOOD, "^^^20261128093000", "^^^tomorrow"), "AE", "102", "tomorrow"),
        (_without(GOOD, "20260601|F", "20260601|X"), "AE", "103", "PID-8"),
        (_without(GOOD, "ACC-PL100", "A" * 17), "AE", "102", "accession"),
        (_without(GOOD, "||||US", "||||"), "AE", "102", "modality"),
        (orm("XO", placer="NOSUCH"), "AE", "204", "no scheduled procedure step"),
    ],
    ids=[
        "no-msh-10",
        "short-encoding-chars",
        "repeated-encoding-char",
        "wrong-type",
        "unknown-order-control",
        "no-msh",
        "no-order-number",
        "bad-start",
        "bad-sex",
        "accession-too-long",
        "no-modality",
        "update-of-unknown-order",
    ],
)
async def test_nak_names_the_reason(hub, peer, message, code, error, reason) -> None:
    ack = await peer.send(message)
    got, _, text = msa(ack)
    assert (got, reason in text) == (code, True), text
    assert str(ack.segment("ERR")(3)).startswith(error + "^")
    assert await worklist(hub) == []
    assert msa(await peer.send(GOOD))[0] == "AA"  # the same connection goes on


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([0, 4, 1, 3], "OBR before PID and ORC"),
        ([0, 1, 2, 4, 3], "OBR before ORC"),
        ([0, 1, 3, 4, 2], "PV1 after ORC"),
        ([0, 1, 2, 3, 4, 4], "a second OBR"),
        ([0, 1, 2], "no ORC"),
    ],
)
async def test_segments_out_of_order_are_refused(hub, peer, lines, reason) -> None:
    segments = GOOD.split("\n")
    ack = await peer.send("\n".join(segments[i] for i in lines))
    code, _, text = msa(ack)
    assert code == "AR" and reason in text, text
    assert str(ack.segment("ERR")(3)).startswith("100^")
    assert await worklist(hub) == []


async def test_undecodable_text_is_refused(hub, peer) -> None:
    block = b"\x0b" + GOOD.replace("\n", "\r").replace("DOE", "D\xd6E").encode("latin-1")
    await peer.send_bytes(block + b"\x1c\r")
    code, _, text = msa(await peer.ack())
    assert code == "AR" and "utf-8" in text
    assert await worklist(hub) == []


async def test_oversize_message_closes_the_connection(hub, peer, caplog) -> None:
    caplog.set_level(logging.WARNING, "hub.hl7")
    huge = GOOD + "\nNTE|1||" + "x" * (70 * 1024)
    await peer.send_bytes(b"\x0b" + huge.replace("\n", "\r").encode() + b"\x1c\r")
    assert await peer.closed_by_hub()
    assert "longer than 65536 bytes" in caplog.text
    await _still_serving(hub)


async def test_bytes_that_are_not_mllp_close_the_connection(hub, peer, caplog) -> None:
    caplog.set_level(logging.WARNING, "hub.hl7")
    await peer.send_bytes(GOOD.replace("\n", "\r").encode() + b"\r")  # no <VT> ... <FS><CR>
    assert await peer.closed_by_hub()
    assert "not MLLP" in caplog.text
    await _still_serving(hub)


async def test_half_a_message_then_disconnect_applies_nothing(hub, peer, caplog) -> None:
    caplog.set_level(logging.WARNING, "hub.hl7")
    text = GOOD.replace("\n", "\r").encode()
    await peer.send_bytes(b"\x0b" + text[: len(text) // 2])
    peer.writer.write_eof()
    assert await peer.closed_by_hub()
    assert "closed within a message" in caplog.text
    await _still_serving(hub)
