"""Reading one received HL7 v2 message: its header, encoding characters, character set and type.

Everything wrong here is refused (AR): the message is not one this door takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7

from hub.hl7.ack import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT,
    UNSUPPORTED_MESSAGE_TYPE,
    refused,
)
from hub.hl7.fields import value

ORDERS = {("ORM", "O01"), ("OMI", "O23")}
PATIENTS = {("ADT", "A08"), ("ADT", "A40")}  # patient update and merge
TAKEN = ORDERS | PATIENTS  # other ADT events are not taken: the hub keeps no visits
# MSH-18 (HL7 table 0211) -> codec; without MSH-18 we take UTF-8, of which ASCII is a part.
CHARSETS = {"": "utf-8", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "8859/1": "latin-1"}


@dataclass(frozen=True)
class Received:
    message: hl7.Message
    kind: tuple[str, str]  # MSH-9: message type and trigger event, e.g. ("ORM", "O01")
    control_id: str  # MSH-10
    sender: str  # MSH-3 sending application ^ MSH-4 sending facility


def read_header(block: bytes) -> hl7.Message:
    """The message's MSH segment alone (an ACK answers it), its encoding characters checked."""
    line = block.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    if not line.startswith("MSH") or len(line) < 8:
        raise refused(SEGMENT_SEQUENCE, "the message does not start with an MSH segment")
    separator = line[3]
    encoding = line[4:].split(separator, 1)[0]
    characters = separator + encoding
    if (
        len(encoding) not in (4, 5)
        or len(set(characters)) != len(characters)
        or any(c.isalnum() or c.isspace() for c in characters)
    ):
        raise refused(DATA_TYPE_ERROR, f"bad encoding characters {characters!r} in MSH-1/MSH-2")
    return hl7.parse(line)


def read_message(block: bytes, header: hl7.Message) -> Received:
    """The whole message, decoded as MSH-18 says, if it is of a type this door takes."""
    msh = header.segment("MSH")
    charset = value(msh, 18).upper()
    if charset not in CHARSETS:
        raise refused(TABLE_VALUE_NOT_FOUND, f"character set {charset!r} (MSH-18) not supported")
    try:
        text = block.decode(CHARSETS[charset])
    except UnicodeDecodeError as exc:
        raise refused(DATA_TYPE_ERROR, f"not {CHARSETS[charset]} text: {exc.reason}") from None
    control_id = value(msh, 10)
    if not control_id:
        raise refused(REQUIRED_FIELD_MISSING, "MSH-10 (message control ID) is missing")
    kind = (value(msh, 9, 1), value(msh, 9, 2))
    if kind not in TAKEN:
        known_type = kind[0] in {message_type for message_type, _ in TAKEN}
        code = UNSUPPORTED_EVENT if known_type else UNSUPPORTED_MESSAGE_TYPE
        listed = ", ".join("^".join(k) for k in sorted(TAKEN))
        raise refused(code, f"{'^'.join(kind)} unsupported: {listed} only")
    segments = "\r".join(s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s)
    sender = f"{value(msh, 3)}^{value(msh, 4)}"
    return Received(hl7.parse(segments), kind, control_id, sender)


def reply_codec(header: hl7.Message | None) -> str:
    """The codec of the ACK: the message's own character set where we know it."""
    charset = value(header.segment("MSH"), 18).upper() if header is not None else ""
    return CHARSETS.get(charset, "utf-8")
