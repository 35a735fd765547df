"""The patient changes of an ADT^A08 (update patient information) or ADT^A40 (merge patient,
patient identifier list) message.

A08: one PID, whose name (PID-5), birth date (PID-7) and sex (PID-8) are the patient's now. A40:
one or more groups of a PID (the surviving patient, with its demographics) and an MRG (MRG-1,
the prior patient's identifier). A field the message leaves empty changes nothing; a field of
``""`` (HL7's null) clears the value.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7

from hub.hl7.ack import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING, SEGMENT_SEQUENCE, not_applied
from hub.hl7.fields import date, person_name, sex, value
from hub.patients.model import Demographics, PatientKey

UPDATE, MERGE = ("ADT", "A08"), ("ADT", "A40")
NULL = '""'
# What the index and the worklist keep (the worklist's columns; DICOM LO for the ID).
NAME_LIMIT, ID_LIMIT = 324, 64


@dataclass(frozen=True)
class PatientChange:
    patient: PatientKey  # PID-3: the patient changed, or the survivor of a merge
    given: Demographics
    prior: PatientKey | None = None  # MRG-1: the patient merged into it


def changes_of(message: hl7.Message, kind: tuple[str, str]) -> list[PatientChange]:
    groups = _groups(message)
    if not groups:
        raise not_applied(REQUIRED_FIELD_MISSING, "PID segment missing")
    if kind == UPDATE:
        if len(groups) > 1:
            raise not_applied(SEGMENT_SEQUENCE, "an A08 updates one patient: one PID")
        pid, mrg = groups[0]
        if mrg is not None:
            raise not_applied(SEGMENT_SEQUENCE, "MRG in an A08: patients merge by A40")
        return [PatientChange(_key(pid, 3, "PID-3"), _demographics(pid))]
    changes = []
    for pid, mrg in groups:
        if mrg is None:
            raise not_applied(REQUIRED_FIELD_MISSING, "MRG segment missing after PID")
        changes.append(
            PatientChange(_key(pid, 3, "PID-3"), _demographics(pid), _key(mrg, 1, "MRG-1"))
        )
    return changes


def _groups(message: hl7.Message) -> list[tuple[hl7.Segment, hl7.Segment | None]]:
    """Each PID with the MRG that follows it (None where there is none)."""
    groups: list[list] = []
    for segment in message:
        name = str(segment[0])
        if name == "PID":
            groups.append([segment, None])
        elif name == "MRG":
            if not groups:
                raise not_applied(SEGMENT_SEQUENCE, "MRG before PID")
            if groups[-1][1] is not None:
                raise not_applied(SEGMENT_SEQUENCE, "two MRG segments for one PID")
            groups[-1][1] = segment
    return [(pid, mrg) for pid, mrg in groups]


def _key(segment: hl7.Segment, field: int, what: str) -> PatientKey:
    """A CX: the ID (component 1) and its assigning authority (component 4)."""
    patient_id = value(segment, field)
    if not patient_id or patient_id == NULL:
        raise not_applied(REQUIRED_FIELD_MISSING, f"{what} (patient ID) is missing")
    if len(patient_id) > ID_LIMIT or "\\" in patient_id:
        raise not_applied(DATA_TYPE_ERROR, f"{what} {patient_id!r} is not a patient ID")
    return PatientKey(patient_id, value(segment, field, 4))


def _demographics(pid: hl7.Segment) -> Demographics:
    name, birth, code = (_given(pid, field) for field in (5, 7, 8))
    return Demographics(
        name=_name(pid) if name else name,
        birth_date=date(birth, "PID-7") if birth else birth,
        sex=sex(code) if code else code,
    )


def _given(pid: hl7.Segment, field: int) -> str | None:
    """A field's text: None where the message leaves it empty, "" for HL7's null."""
    text = value(pid, field)
    if not text:
        return None
    return "" if text == NULL else text


def _name(pid: hl7.Segment) -> str:
    name = person_name(pid, 5)
    if len(name) > NAME_LIMIT or "\\" in name:
        raise not_applied(DATA_TYPE_ERROR, f"patient name {name!r} (PID-5) is not a person name")
    return name
