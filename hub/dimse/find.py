"""C-FIND SCP: Patient Root and Study Root through the archive's query engine (as QIDO-RS),
and the Modality Worklist from the worklist tables.

An identifier element with a value is a matching key, an empty one a return key. Answers
carry exactly the requested keys (empty when there is no value), the QueryRetrieveLevel and a
SpecificCharacterSet that can encode them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pynetdicom import sop_class
from pynetdicom.events import Event

from hub.archive import errors as codes
from hub.archive.attributes import INSTANCE_TAGS, PATIENT_TAGS, SERIES_TAGS, STUDY_TAGS
from hub.archive.query import KEYS, Query, QueryError
from hub.dimse import audit
from hub.dimse.access import AccessPolicy, NotAuthorized
from hub.dimse.bridge import ArchiveUnavailable, LoopBridge
from hub.dimse.status import CANCEL, PENDING, SUCCESS, status
from hub.security.accounts import Principal
from hub.security.visibility import scope_of, worklist_restriction
from hub.worklist.dataset import worklist_dataset
from hub.worklist.model import STATUSES, WorklistFilter
from hub.worklist.model import search as search_worklist

log = logging.getLogger(__name__)

LEVELS = {"PATIENT": "PATIENT", "STUDY": "STUDY", "SERIES": "SERIES", "IMAGE": "INSTANCE"}
PATIENT_ROOT = {
    sop_class.PatientRootQueryRetrieveInformationModelFind,
    sop_class.PatientRootQueryRetrieveInformationModelMove,
    sop_class.PatientRootQueryRetrieveInformationModelGet,
}
QR_FIND = [
    sop_class.PatientRootQueryRetrieveInformationModelFind,
    sop_class.StudyRootQueryRetrieveInformationModelFind,
]
MWL_FIND = sop_class.ModalityWorklistInformationFind
# Elements of an identifier that are not keys.
CONTROL = {0x00080005, 0x00080052, 0x00080054}  # SpecificCharacterSet, QR level, Retrieve AE
INDEXED_TAGS = set(PATIENT_TAGS + STUDY_TAGS + SERIES_TAGS + INSTANCE_TAGS)
# MWL matching keys (PS3.4 K.6.1.2): identifier keyword -> WorklistFilter field, for the
# identifier itself and for its Scheduled Procedure Step Sequence item.
MWL_KEYS = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "AccessionNumber": "accession",
    "RequestedProcedureID": "requested_procedure_id",
    "StudyInstanceUID": "study_uid",
}
MWL_STEP_KEYS = {
    "ScheduledProcedureStepID": "sps_id",
    "Modality": "modality",
    "ScheduledStationAETitle": "station_ae",
    "ScheduledProcedureStepStartDate": "start_date",
    "ScheduledProcedureStepStartTime": "start_time",
}
MWL_STATUS = "ScheduledProcedureStepStatus"  # in the step item too
MWL_DEFAULT_STATUSES = ("SCHEDULED", "STARTED")  # without one asked for: what can still be done


class IdentifierError(ValueError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def matching_value(elem: DataElement) -> str:
    """An identifier element's value as a DICOM matching string ("" = universal)."""
    value = elem.value
    if value is None or elem.VR == "SQ":
        return ""
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return str(value)


def to_query(identifier: Dataset, model: str) -> Query:
    level_name = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level_name not in LEVELS:
        raise IdentifierError(
            codes.DATASET_DOES_NOT_MATCH_SOP_CLASS, f"QueryRetrieveLevel {level_name!r} unknown"
        )
    if level_name == "PATIENT" and model not in PATIENT_ROOT:
        raise IdentifierError(
            codes.DATASET_DOES_NOT_MATCH_SOP_CLASS, "PATIENT level needs the Patient Root model"
        )
    keys = {}
    for elem in identifier:
        if elem.tag in CONTROL or not elem.keyword:
            continue
        value = matching_value(elem)
        # Keys the engine cannot match on stay return keys (PS3.4 C.2.2.1: optional matching).
        if value and elem.keyword in KEYS:
            keys[elem.keyword] = value
    # Attributes outside the index's per-level sets cost a metadata read per instance.
    requested = {f"{int(e.tag):08X}" for e in identifier if e.tag not in CONTROL}
    return Query(level=LEVELS[level_name], keys=keys, include=requested - INDEXED_TAGS)


def project(full: Dataset, identifier: Dataset) -> Dataset:
    """The requested keys of `full`: present ones with their value, missing ones empty."""
    out = Dataset()
    for elem in identifier:
        if elem.tag in CONTROL:
            continue
        if elem.tag not in full:
            out.add_new(elem.tag, elem.VR, Sequence() if elem.VR == "SQ" else None)
            continue
        value = full[elem.tag]
        if elem.VR == "SQ" and elem.value and value.VR == "SQ":
            item_keys = elem.value[0]
            out.add_new(elem.tag, "SQ", Sequence([project(i, item_keys) for i in value.value]))
        else:
            out.add(value)
    return out


def answer(full: Dataset, identifier: Dataset, level: str | None, retrieve_ae: str) -> Dataset:
    out = project(full, identifier)
    if level is not None:
        out.QueryRetrieveLevel = level
        if "RetrieveAETitle" in identifier:
            out.RetrieveAETitle = retrieve_ae
    if charset := _charset(out, identifier):
        out.SpecificCharacterSet = charset
    return out


def _charset(ds: Dataset, identifier: Dataset) -> str | list[str] | None:
    """The requester's character set if it can carry the answer, else UTF-8 (None: the
    default repertoire, which is stated by leaving the attribute out)."""
    asked = identifier.get("SpecificCharacterSet") or None
    if all(_ascii(e) for e in ds.iterall()):
        return asked
    return asked if asked in ("ISO_IR 192", ["ISO_IR 192"]) else "ISO_IR 192"


def _ascii(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return True  # iterall() visits the items' elements
    values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
    return all(v is None or str(v).isascii() for v in values)


def _rows_to_datasets(rows: list[dict], identifier: Dataset) -> Iterator[Dataset]:
    wanted = {f"{int(e.tag):08X}" for e in identifier}
    for row in rows:
        yield Dataset.from_json({tag: v for tag, v in row.items() if tag in wanted})


def scoped_query(identifier: Dataset, model: str, who: Principal) -> Query:
    """The identifier as a query limited to what `who` may read (as its QIDO-RS would be)."""
    query = to_query(identifier, model)
    query.scope = scope_of(who)
    return query


class FindHandler:
    def __init__(self, archive, bridge: LoopBridge, retrieve_ae: str, policy: AccessPolicy) -> None:
        self.archive = archive
        self.bridge = bridge
        self.retrieve_ae = retrieve_ae
        self.policy = policy

    def __call__(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        model = event.request.AffectedSOPClassUID
        service = "worklist" if model == MWL_FIND else "find"
        try:
            who = self.policy.authorize(event, service)
            identifier = event.identifier
            if model == MWL_FIND:
                found = self._worklist(identifier, who)
                level = None
            else:
                query = scoped_query(identifier, model, who)
                rows = self.bridge.call(self.archive.search_all(query))
                found = list(_rows_to_datasets(rows, identifier))
                level = identifier.QueryRetrieveLevel
        except NotAuthorized as exc:
            yield exc.status, None
            return
        except IdentifierError as exc:
            yield status(exc.code, str(exc)), None
            return
        except QueryError as exc:
            yield status(codes.CANNOT_UNDERSTAND, str(exc)), None
            return
        except ArchiveUnavailable as exc:
            yield status(codes.OUT_OF_RESOURCES, str(exc)), None
            return
        except Exception as exc:
            log.exception("C-FIND failed")
            yield status(codes.CANNOT_UNDERSTAND, f"cannot understand: {exc}"), None
            return
        studies = [str(identifier.StudyInstanceUID)] if identifier.get("StudyInstanceUID") else []
        detail = {"level": level, "matches": len(found)}
        audit.record(self.archive, self.bridge, event, who, f"dimse.{service}", studies, detail)
        for full in found:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer(full, identifier, level, self.retrieve_ae)
        yield SUCCESS, None

    def _worklist(self, identifier: Dataset, who: Principal) -> list[Dataset]:
        flt = worklist_filter(identifier)
        if (restriction := worklist_restriction(who)) is not None:
            flt.restrict.append(restriction)
        items = self.bridge.call(search_worklist(self.archive.engine, flt))
        return [worklist_dataset(item) for item in items]


def worklist_filter(identifier: Dataset) -> WorklistFilter:
    """MWL matching keys (PS3.4 K.6.1.2) as a worklist filter."""
    steps = identifier.get("ScheduledProcedureStepSequence") or [Dataset()]
    sps = steps[0]

    def text(ds: Dataset, keyword: str) -> str:
        return matching_value(ds[keyword]) if keyword in ds else ""

    wanted_status = text(sps, MWL_STATUS).upper()
    if wanted_status and wanted_status not in STATUSES:
        raise IdentifierError(codes.CANNOT_UNDERSTAND, f"{MWL_STATUS} {wanted_status!r} unknown")
    return WorklistFilter(
        **{field: text(identifier, keyword) for keyword, field in MWL_KEYS.items()},
        **{field: text(sps, keyword) for keyword, field in MWL_STEP_KEYS.items()},
        statuses=(wanted_status,) if wanted_status else MWL_DEFAULT_STATUSES,
    )
