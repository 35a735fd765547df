"""The orders of an ORM^O01 or OMI^O23 message, mapped to worklist items (see hub/hl7 for the
field mapping and where it comes from)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import hl7

from hub.hl7.ack import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    TABLE_VALUE_NOT_FOUND,
    not_applied,
    refused,
)
from hub.hl7.fields import date, date_time, entity_id, person_name, sex, value
from hub.worklist.model import NewItem

NEW, UPDATE, CANCEL = "new", "update", "cancel"
# ORC-1 order control (HL7 table 0119) -> what happens to the scheduled procedure step.
CONTROLS = {"NW": NEW, "XO": UPDATE, "SC": UPDATE, "CA": CANCEL, "DC": CANCEL}
PATIENT_SEGMENTS = {"PID", "PD1", "PV1", "PV2"}
DETAIL_SEGMENTS = {"TQ1", "OBR", "IPC", "ZDS"}
UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
# Study Instance UIDs made from order numbers (2.25: a UUID as a UID, PS3.5 B.2).
ORDER_UIDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:tessera:hl7-order")


@dataclass
class Group:
    """One ORC and the segments of its order detail."""

    orc: hl7.Segment
    segments: dict[str, hl7.Segment] = field(default_factory=dict)

    def get(self, name: str) -> hl7.Segment | None:
        return self.segments.get(name)


@dataclass(frozen=True)
class Order:
    action: str  # NEW, UPDATE or CANCEL
    key: str  # the placer order number (else the filler's) with its assigning authority
    study_uids: list[str]  # the step's StudyInstanceUID: the order's own first, then ours
    item: NewItem  # the mapped fields
    given: frozenset[str]  # NewItem fields the message gave a value for


def orders_of(message: hl7.Message) -> list[Order]:
    patient, groups = _structure(message)
    return [_order(patient, group) for group in groups]


def _structure(message: hl7.Message) -> tuple[dict[str, hl7.Segment], list[Group]]:
    """The patient segments and the order groups, refused when out of order (ORM^O01 and
    OMI^O23: patient segments, then each ORC followed by its TQ1, OBR, IPC and ZDS)."""
    patient: dict[str, hl7.Segment] = {}
    groups: list[Group] = []
    for segment in message[1:]:
        name = str(segment[0])
        if name in PATIENT_SEGMENTS:
            if groups:
                raise refused(SEGMENT_SEQUENCE, f"{name} after ORC: patient segments come first")
            if name in patient or (name != "PID" and "PID" not in patient):
                raise refused(SEGMENT_SEQUENCE, f"{name} out of place in the patient segments")
            patient[name] = segment
        elif name == "ORC":
            groups.append(Group(segment))
        elif name in DETAIL_SEGMENTS:
            _add_detail(groups, name, segment, "PID" in patient)
    if not groups:
        raise refused(SEGMENT_SEQUENCE, "no ORC segment")
    return patient, groups


def _add_detail(groups: list[Group], name: str, segment: hl7.Segment, had_pid: bool) -> None:
    if not groups:
        before = "ORC" if had_pid else "PID and ORC"
        raise refused(SEGMENT_SEQUENCE, f"{name} before {before}")
    group = groups[-1]
    if name in group.segments:
        raise refused(SEGMENT_SEQUENCE, f"a second {name} in one order (one step per ORC)")
    if name == "TQ1" and "OBR" in group.segments:
        raise refused(SEGMENT_SEQUENCE, "TQ1 after OBR")
    if name in ("IPC", "ZDS") and "OBR" not in group.segments:
        raise refused(SEGMENT_SEQUENCE, f"{name} before OBR")
    group.segments[name] = segment


def _order(patient: dict[str, hl7.Segment], group: Group) -> Order:
    control = value(group.orc, 1).upper()
    if control not in CONTROLS:
        raise refused(TABLE_VALUE_NOT_FOUND, f"order control {control!r} (ORC-1) not supported")
    action = CONTROLS[control]
    obr = group.get("OBR")
    key = _order_key(group.orc, obr)
    if action != CANCEL and obr is None:
        raise not_applied(REQUIRED_FIELD_MISSING, f"order {key}: OBR segment missing")
    if action == NEW and "PID" not in patient:
        raise not_applied(REQUIRED_FIELD_MISSING, f"order {key}: PID segment missing")
    mapped = _patient_fields(patient) | (_order_fields(group) if obr is not None else {})
    mapped["referring_physician"] = _referring(patient.get("PV1"), obr)
    given = frozenset(name for name, v in mapped.items() if v not in ("", []))
    item = NewItem(**{"patient_name": "", "patient_id": "", "modality": ""} | mapped)
    own_uid = _study_uid(group)
    ours = "2.25." + str(uuid.uuid5(ORDER_UIDS, key).int)
    return Order(action, key, [u for u in (own_uid, ours) if u], item, given)


def _order_key(orc: hl7.Segment, obr: hl7.Segment | None) -> str:
    """ORC-2 (else OBR-2) placer order number, else ORC-3 (else OBR-3) filler order number."""
    for field_no, kind in ((2, "placer"), (3, "filler")):
        number = entity_id(orc, field_no) or (entity_id(obr, field_no) if obr else "")
        if number:
            return f"{kind} {number}"
    raise refused(REQUIRED_FIELD_MISSING, "no placer or filler order number (ORC-2, ORC-3)")


def _patient_fields(patient: dict[str, hl7.Segment]) -> dict:
    pid = patient.get("PID")
    if pid is None:
        return {}
    return {
        "patient_id": value(pid, 3),
        "patient_name": person_name(pid, 5),
        "birth_date": date(value(pid, 7), "PID-7"),
        "sex": sex(value(pid, 8)),
    }


def _order_fields(group: Group) -> dict:
    obr, ipc, tq1 = group.segments["OBR"], group.get("IPC"), group.get("TQ1")
    procedure = _code(obr, 4, 1)
    protocol = _code(ipc, 6, 1) if ipc else _code(obr, 4, 4)
    start = value(tq1, 7) if tq1 else value(obr, 27, 4) or value(group.orc, 7, 4)
    return {
        "accession": value(ipc, 1) if ipc else value(obr, 18),
        "requested_procedure_id": value(ipc, 2) if ipc else value(obr, 19),
        "sps_id": value(ipc, 4) if ipc else value(obr, 20),
        "modality": value(ipc, 5) if ipc and value(ipc, 5) else value(obr, 24),
        "station_ae": value(ipc, 9) if ipc else "",
        "requested_procedure_description": value(obr, 4, 2),
        "requested_procedure_codes": [procedure] if procedure else [],
        "sps_description": value(obr, 4, 5) or (value(ipc, 6, 2) if ipc else ""),
        "protocol_codes": [protocol] if protocol else [],
        "start": date_time(start, "the scheduled start"),
    }


def _referring(pv1: hl7.Segment | None, obr: hl7.Segment | None) -> str:
    """PV1-8 referring doctor; else OBR-16 ordering provider (the worklist has no Requesting
    Physician of its own to put it in)."""
    referring = person_name(pv1, 8, first=2) if pv1 else ""
    return referring or (person_name(obr, 16, first=2) if obr else "")


def _code(segment: hl7.Segment, field_no: int, first: int) -> dict | None:
    """A CE/CWE triplet (identifier^text^coding system) at component ``first``; None unless
    all three are given (the worklist's codes need them)."""
    code, meaning, scheme = (value(segment, field_no, first + i) for i in range(3))
    return (
        {"value": code, "scheme": scheme, "meaning": meaning}
        if code and scheme and meaning
        else None
    )


def _study_uid(group: Group) -> str:
    """The StudyInstanceUID the order filler assigned: IPC-3 (OMI), ZDS-1 (ORM, IHE RAD-4)."""
    ipc, zds = group.get("IPC"), group.get("ZDS")
    uid = value(ipc, 3) if ipc else value(zds, 1) if zds else ""
    if uid and not (len(uid) <= 64 and UID.fullmatch(uid)):
        raise not_applied(DATA_TYPE_ERROR, f"study instance UID {uid!r} is not a UID")
    return uid
