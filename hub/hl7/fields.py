"""Values out of parsed HL7 v2 segments, in the shapes the worklist takes."""

from __future__ import annotations

import re
from datetime import datetime

import hl7

from hub.hl7.ack import DATA_TYPE_ERROR, TABLE_VALUE_NOT_FOUND, not_applied

# HL7 table 0001 -> DICOM Patient's Sex: unknown is left empty, ambiguous and other are O.
SEXES = {"M": "M", "F": "F", "O": "O", "A": "O", "N": "O", "U": "", "": ""}


def value(segment: hl7.Segment, field: int, component: int = 1, sub: int = 1) -> str:
    """One value (unescaped; the first repetition), "" when the message leaves it out."""
    try:
        return str(segment.extract_field(1, field, 1, component, sub)).strip()
    except IndexError:  # a path deeper than the value the message gave
        return ""


def person_name(segment: hl7.Segment, field: int, first: int = 1) -> str:
    """A DICOM PN from an XPN (``first`` = 1: family^given^middle^suffix^prefix) or an XCN
    (``first`` = 2, after the ID). PN's order is family^given^middle^prefix^suffix."""
    family, given, middle, suffix, prefix = (value(segment, field, first + i) for i in range(5))
    return "^".join((family, given, middle, prefix, suffix)).rstrip("^")


def entity_id(segment: hl7.Segment, field: int) -> str:
    """An EI (entity identifier^namespace ID^universal ID^universal ID type), "" without the
    identifier."""
    parts = [value(segment, field, i) for i in range(1, 5)]
    return "^".join(parts).rstrip("^") if parts[0] else ""


def sex(text: str, what: str = "PID-8") -> str:
    """DICOM Patient's Sex from an HL7 administrative sex (table 0001)."""
    code = text.upper()
    if code not in SEXES:
        raise not_applied(TABLE_VALUE_NOT_FOUND, f"sex {code!r} ({what}) is not in HL7 table 0001")
    return SEXES[code]


def date(text: str, what: str) -> str:
    """YYYYMMDD from an HL7 DTM/DT."""
    if not text:
        return ""
    return date_time(text, what)[:10].replace("-", "")


def date_time(text: str, what: str) -> str:
    """ISO 8601 from an HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]); the day is needed,
    the time zone is dropped (the worklist keeps local times)."""
    if not text:
        return ""
    digits = re.split(r"[+-]", text, maxsplit=1)[0].split(".")[0]
    if not (digits.isdigit() and len(digits) in (8, 10, 12, 14)):
        raise not_applied(DATA_TYPE_ERROR, f"{what} {text!r} is not an HL7 date-time")
    padded = digits.ljust(14, "0")
    try:
        return datetime.strptime(padded, "%Y%m%d%H%M%S").isoformat()
    except ValueError:
        raise not_applied(DATA_TYPE_ERROR, f"{what} {text!r} is not a date") from None
