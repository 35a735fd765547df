"""Values out of parsed HL7 v2 segments, in the shapes the worklist takes."""

from __future__ import annotations

import hl7


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
