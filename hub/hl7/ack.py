"""Acknowledgements (HL7 v2.5 section 2.9 original mode): AA when a message was applied, AE when
it was understood but cannot be applied, AR when it is refused (wrong type, malformed).

MSA-3 and ERR-8 carry the reason as text, ERR-3 its code from HL7 table 0357.
"""

from __future__ import annotations

import hl7

# HL7 table 0357, the codes used here.
SEGMENT_SEQUENCE = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNKNOWN_KEY = "204"
APPLICATION_ERROR = "207"

CODE_TEXT = {
    SEGMENT_SEQUENCE: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNKNOWN_KEY: "Unknown key identifier",
    APPLICATION_ERROR: "Application internal error",
}

# The header a NAK answers when the message's own MSH cannot be read.
_UNREADABLE = "MSH|^~\\&|||||||ACK^^ACK||P|2.5"


class Nak(Exception):
    """A message that gets AE or AR instead of AA; ``code`` is from HL7 table 0357."""

    def __init__(self, ack: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.ack, self.code, self.reason = ack, code, reason


def refused(code: str, reason: str) -> Nak:
    return Nak("AR", code, reason)


def not_applied(code: str, reason: str) -> Nak:
    return Nak("AE", code, reason)


def accept(message: hl7.Message, application: str, note: str = "") -> str:
    """The AA for an applied message, ``note`` in MSA-3 (e.g. "order already scheduled")."""
    ack = message.create_ack("AA", application=application)
    if note:
        ack.segment("MSA").assign_field(ack.escape(note), 3)
    return str(ack)


def reject(message: hl7.Message | None, application: str, nak: Nak) -> str:
    """The AE or AR for ``nak``, answering ``message`` (None: its header was unreadable)."""
    source = message if message is not None else hl7.parse(_UNREADABLE)
    ack = source.create_ack(nak.ack, application=application)
    reason = ack.escape(nak.reason)
    ack.segment("MSA").assign_field(reason, 3)
    err = ack.create_segment([ack.create_field(["ERR"])])
    err.assign_field(nak.code, 3, 1, 1)
    err.assign_field(CODE_TEXT[nak.code], 3, 1, 2)
    err.assign_field("HL70357", 3, 1, 3)
    err.assign_field("E", 4)
    err.assign_field(reason, 8)
    ack.append(err)
    return str(ack)
