"""Worklist attributes carried into captured images (PS3.17 Annex J).

A session starts from a worklist item. When ``hub.worklist`` is available the item is read from
it (``get_item`` + ``image_attributes``); otherwise, or for an ad-hoc session, the clinic posts
the request fields inline and ``inline_image_attributes`` builds the same Dataset.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydicom import Dataset
from pydicom.uid import generate_uid
from pydicom.valuerep import PersonName


class WorklistError(ValueError):
    """The worklist item is missing or its fields are unusable."""


class WorklistSource(Protocol):
    async def get_item(self, engine: Any, item_id: Any, restrict: Any = None) -> Any: ...

    def image_attributes(self, item: Any) -> Dataset: ...


# Patient and study attributes an image takes over from the worklist item unchanged.
COPIED_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "OtherPatientIDsSequence",
    "StudyInstanceUID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianName",
    "RequestAttributesSequence",
    "StudyID",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PerformedProcedureStepDescription",
    "PerformedProtocolCodeSequence",
)


@dataclass(frozen=True)
class _Worklist:
    get_item: Callable[..., Awaitable[Any]]
    image_attributes: Callable[[Any], Dataset]


def worklist_module() -> WorklistSource | None:
    """``hub.worklist`` if it exports both functions, else its model/dataset modules."""
    with contextlib.suppress(ImportError):
        module = importlib.import_module("hub.worklist")
        if hasattr(module, "get_item") and hasattr(module, "image_attributes"):
            return module  # type: ignore[return-value]
    try:
        model = importlib.import_module("hub.worklist.model")
        dataset = importlib.import_module("hub.worklist.dataset")
    except ImportError:
        return None
    return _Worklist(model.get_item, dataset.image_attributes)  # type: ignore[return-value]


async def attributes_for_item(engine: Any, item_id: str, restrict: Any = None) -> Dataset:
    """The image attributes of a worklist item the caller may see (``restrict``: the
    caller's worklist limit, None for all)."""
    module = worklist_module()
    if module is None:
        raise WorklistError("the worklist is not available on this hub; send the fields inline")
    try:
        key: Any = int(item_id)
    except (TypeError, ValueError):
        raise WorklistError(f"worklist item id {item_id!r} is not a number") from None
    item = await module.get_item(engine, key, restrict)
    if item is None:
        raise WorklistError(f"worklist item {item_id!r} not found")
    return keep_image_attributes(module.image_attributes(item))


def keep_image_attributes(ds: Dataset) -> Dataset:
    kept = Dataset()
    for keyword in COPIED_KEYWORDS:
        if keyword in ds:
            setattr(kept, keyword, ds[keyword].value)
    if "StudyInstanceUID" not in kept:
        kept.StudyInstanceUID = generate_uid()
    _prune_requests(kept)
    if "StudyID" not in kept:  # Annex J: Study ID from the Requested Procedure ID
        requests = kept.get("RequestAttributesSequence") or [Dataset()]
        kept.StudyID = str(requests[0].get("RequestedProcedureID", ""))[:16]
    return kept


def inline_image_attributes(body: dict[str, Any]) -> Dataset:
    """Annex J mapping for a request sent by the clinic page as JSON."""
    patient = body.get("patient") or {}
    if not isinstance(patient, dict) or not (patient.get("id") or patient.get("name")):
        raise WorklistError("patient.id or patient.name is required")
    ds = Dataset()
    ds.PatientName = PersonName(str(patient.get("name", "")))
    ds.PatientID = str(patient.get("id", ""))
    ds.PatientBirthDate = _text(patient.get("birth_date"), 8)
    ds.PatientSex = _choice(patient.get("sex"), {"M", "F", "O", ""}, "patient.sex")
    _paediatric_fields(ds, patient)

    ds.StudyInstanceUID = str(body.get("study_uid") or generate_uid())
    ds.AccessionNumber = _text(body.get("accession"), 16)
    ds.ReferringPhysicianName = PersonName(str(body.get("referring_physician", "")))
    requested_id = _text(body.get("requested_procedure_id"), 16)
    ds.StudyID = requested_id  # Annex J: Study ID from Requested Procedure ID
    if body.get("description"):
        ds.StudyDescription = _text(body["description"], 64)

    request = Dataset()
    request.RequestedProcedureID = requested_id
    request.ScheduledProcedureStepID = _text(body.get("scheduled_procedure_step_id"), 16)
    if body.get("scheduled_procedure_step_description"):
        request.ScheduledProcedureStepDescription = _text(
            body["scheduled_procedure_step_description"], 64
        )
    if protocol := body.get("protocol_code"):
        request.ScheduledProtocolCodeSequence = [_code(protocol)]
        ds.PerformedProtocolCodeSequence = [_code(protocol)]
    ds.RequestAttributesSequence = [request]
    _prune_requests(ds)
    return ds


def _prune_requests(ds: Dataset) -> None:
    """Drop empty values from the request items; an item left empty goes too.

    RequestedProcedureID and ScheduledProcedureStepID are Type 1C there: present only with a
    value (an ad-hoc session has no scheduled step)."""
    items = []
    for item in ds.get("RequestAttributesSequence") or []:
        for element in list(item):
            if element.value in (None, "", []) or (element.VR == "SQ" and not element.value):
                del item[element.tag]
        if len(item):
            items.append(item)
    if "RequestAttributesSequence" in ds:
        if items:
            ds.RequestAttributesSequence = items
        else:
            del ds.RequestAttributesSequence


def _paediatric_fields(ds: Dataset, patient: dict[str, Any]) -> None:
    if age := patient.get("age"):
        age = str(age)
        if len(age) != 4 or not age[:3].isdigit() or age[3] not in "DWMY":
            raise WorklistError("patient.age must look like 006M (nnnD, nnnW, nnnM or nnnY)")
        ds.PatientAge = age
    for key, keyword in (("weight_kg", "PatientWeight"), ("size_m", "PatientSize")):
        if (value := patient.get(key)) is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise WorklistError(f"patient.{key} must be a number") from None
        if not 0 < number < 1000:
            raise WorklistError(f"patient.{key} is out of range")
        setattr(ds, keyword, f"{number:.6g}")


def _code(value: Any) -> Dataset:
    if not isinstance(value, dict) or not all(value.get(k) for k in ("value", "scheme", "meaning")):
        raise WorklistError("a code needs value, scheme and meaning")
    code = Dataset()
    code.CodeValue = _text(value["value"], 16)
    code.CodingSchemeDesignator = _text(value["scheme"], 16)
    code.CodeMeaning = _text(value["meaning"], 64)
    return code


def _text(value: Any, max_length: int) -> str:
    text = "" if value is None else str(value)
    if len(text) > max_length or "\\" in text:
        raise WorklistError(f"{text[:20]!r}... is longer than {max_length} characters or has '\\'")
    return text


def _choice(value: Any, allowed: set[str], name: str) -> str:
    text = "" if value is None else str(value).upper()
    if text not in allowed:
        raise WorklistError(f"{name} must be one of {sorted(allowed)}")
    return text
