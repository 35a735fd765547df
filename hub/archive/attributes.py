"""What each index level keeps of an instance: matching columns and returned attributes."""

from __future__ import annotations

import unicodedata
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset

from hub.archive.parse import ParsedInstance


def _tags(*keywords: str) -> tuple[str, ...]:
    return tuple(f"{tag_for_keyword(k):08X}" for k in keywords)


PATIENT_TAGS = _tags(
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientComments",
)
STUDY_TAGS = _tags(
    "SpecificCharacterSet",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName",
    "StudyDescription",
    "StudyInstanceUID",
    "StudyID",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)
SERIES_TAGS = _tags(
    "SpecificCharacterSet",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "SeriesInstanceUID",
    "SeriesDate",
    "SeriesTime",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "RequestAttributesSequence",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "StationName",
    "FrameOfReferenceUID",
)
INSTANCE_TAGS = _tags(
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "ContentDate",
    "ContentTime",
    "AcquisitionDateTime",
    "InstanceNumber",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
    "FrameTime",
    "CineRate",
    "LossyImageCompression",
    "DimensionOrganizationType",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
    "TotalPixelMatrixFocalPlanes",
    "ImagedVolumeWidth",
    "ImagedVolumeHeight",
    "ContainerIdentifier",
    "SpecimenDescriptionSequence",
    "OpticalPathSequence",
    "SharedFunctionalGroupsSequence",
)


def pick(data: dict[str, Any], tags: tuple[str, ...]) -> dict[str, Any]:
    return {t: data[t] for t in tags if t in data}


def normalise_name(value: Any) -> str:
    """Lower-case, accent-free words of a person name, for fuzzy matching."""
    text = unicodedata.normalize("NFKD", str(value or ""))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    for sep in "^=,":
        text = text.replace(sep, " ")
    return " ".join(text.split())


def pad_time(value: str, fill: str = "0") -> str:
    """TM values as HHMMSS.ffffff so that string order is time order."""
    value = (value or "").replace(":", "").strip()
    if not value:
        return ""
    whole, _, frac = value.partition(".")
    return (whole + fill * 6)[:6] + "." + (frac + fill * 6)[:6]


def sort_time(ds: Dataset) -> str:
    if dt := str(ds.get("AcquisitionDateTime") or ""):
        return dt
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
    ):
        date = str(ds.get(date_kw) or "")
        if date:
            return date + pad_time(str(ds.get(time_kw) or ""))
    return ""


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return None


def pixel_spacing(ds: Dataset) -> str:
    try:
        fg = ds.SharedFunctionalGroupsSequence[0]
        spacing = fg.PixelMeasuresSequence[0].PixelSpacing
    except (AttributeError, IndexError, KeyError):
        spacing = ds.get("PixelSpacing")
    return "\\".join(str(v) for v in spacing) if spacing else ""


# What a study shows of its patient and of itself, and what an instance carries of all three
# levels (shown to callers who may read only part of a study).
STUDY_SHOWN_TAGS = tuple(dict.fromkeys(PATIENT_TAGS + STUDY_TAGS))
SHARED_TAGS = tuple(dict.fromkeys(STUDY_SHOWN_TAGS + SERIES_TAGS))


def rows(p: ParsedInstance) -> dict[str, dict[str, Any]]:
    ds = p.dataset
    patient_name = _str(ds, "PatientName")
    referring = _str(ds, "ReferringPhysicianName")
    image_type = ds.get("ImageType")
    return {
        "patient": {
            "patient_id": _str(ds, "PatientID"),
            "issuer": _str(ds, "IssuerOfPatientID"),
            "patient_name": patient_name,
            "name_norm": normalise_name(patient_name),
            "birth_date": _str(ds, "PatientBirthDate"),
            "sex": _str(ds, "PatientSex"),
            "attrs": pick(p.json, PATIENT_TAGS),
        },
        "study": {
            "study_uid": p.study_uid,
            "patient_name": patient_name,
            "patient_name_norm": normalise_name(patient_name),
            "patient_birth_date": _str(ds, "PatientBirthDate"),
            "patient_sex": _str(ds, "PatientSex"),
            "study_date": _str(ds, "StudyDate"),
            "study_time": pad_time(_str(ds, "StudyTime")),
            "accession": _str(ds, "AccessionNumber"),
            "study_id": _str(ds, "StudyID"),
            "description": _str(ds, "StudyDescription"),
            "referring": referring,
            "referring_norm": normalise_name(referring),
            "attrs": pick(p.json, STUDY_SHOWN_TAGS),
        },
        "series": {
            "series_uid": p.series_uid,
            "modality": _str(ds, "Modality"),
            "series_number": _int(ds, "SeriesNumber"),
            "description": _str(ds, "SeriesDescription"),
            "pps_start_date": _str(ds, "PerformedProcedureStepStartDate"),
            "pps_start_time": pad_time(_str(ds, "PerformedProcedureStepStartTime")),
            "first_time": sort_time(ds),
            "attrs": pick(p.json, SERIES_TAGS),
        },
        "instance": {
            "sop_uid": p.sop_uid,
            "sop_class_uid": p.sop_class_uid,
            "instance_number": _int(ds, "InstanceNumber"),
            "sort_time": sort_time(ds),
            "transfer_syntax": p.transfer_syntax,
            "number_of_frames": _int(ds, "NumberOfFrames") or 1,
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "image_type": "\\".join(str(v) for v in image_type) if image_type else "",
            "total_rows": _int(ds, "TotalPixelMatrixRows"),
            "total_columns": _int(ds, "TotalPixelMatrixColumns"),
            "pixel_spacing": pixel_spacing(ds),
            "container_id": _str(ds, "ContainerIdentifier"),
            "attrs": pick(p.json, INSTANCE_TAGS),
            "shared": pick(p.json, SHARED_TAGS),
        },
    }


def tag_of(key: str) -> str | None:
    """A QIDO/C-FIND key given as a keyword or as eight hex digits, as eight hex digits."""
    if len(key) == 8:
        try:
            int(key, 16)
            return key.upper()
        except ValueError:
            pass
    tag = tag_for_keyword(key)
    return None if tag is None else f"{tag:08X}"


def keyword_of(tag_hex: str) -> str:
    return keyword_for_tag(int(tag_hex, 16)) or tag_hex
