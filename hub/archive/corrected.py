"""Patient demographics corrected after their objects were stored, as the index presents them.

A correction (``patients.corrected``) is DICOM JSON of patient attributes. Every read that shows
a patient's attributes (QIDO-RS, C-FIND, WADO-RS metadata) lays it over what the objects say,
and the matching columns of the patient's studies hold the corrected values, so a search by the
new name finds them. The stored objects are not touched.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword

from hub.archive.attributes import normalise_name


def _tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


PATIENT_NAME = _tag("PatientName")
PATIENT_ID = _tag("PatientID")
ISSUER = _tag("IssuerOfPatientID")
BIRTH_DATE = _tag("PatientBirthDate")
SEX = _tag("PatientSex")
OTHER_IDS = _tag("OtherPatientIDsSequence")


@lru_cache(maxsize=1024)
def _parsed(corrected: str) -> dict[str, Any]:
    return json.loads(corrected)


def overlay(corrected: str) -> dict[str, Any]:
    """The corrected attributes ({} for none); not to be changed by the caller."""
    return _parsed(corrected) if corrected else {}


def presented(attrs: dict[str, Any], corrected: str) -> dict[str, Any]:
    """``attrs`` with the correction laid over them, in tag order."""
    if not corrected:
        return attrs
    return dict(sorted({**attrs, **overlay(corrected)}.items()))


def presented_json(text: str, corrected: str) -> str:
    """A stored instance's DICOM JSON with the correction laid over it."""
    if not corrected:
        return text
    return json.dumps(presented(json.loads(text), corrected), separators=(",", ":"))


def text_value(attrs: dict[str, Any], tag: str) -> str:
    """The first value of a text element of DICOM JSON ("" when absent or empty)."""
    element = attrs.get(tag) or {}
    values = element.get("Value") or [""]
    first = values[0]
    if isinstance(first, dict):  # a person name, its groups written as in the object
        groups = (first.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic"))
        return "=".join(groups).rstrip("=")
    return str(first).strip()


def study_columns(attrs: dict[str, Any], corrected: str) -> dict[str, str]:
    """The patient matching columns of a study whose own attributes are ``attrs``."""
    shown = {**attrs, **overlay(corrected)}
    name = text_value(shown, PATIENT_NAME)
    return {
        "patient_name": name,
        "patient_name_norm": normalise_name(name),
        "patient_birth_date": text_value(shown, BIRTH_DATE),
        "patient_sex": text_value(shown, SEX),
    }


def patient_columns(attrs: dict[str, Any], corrected: str) -> dict[str, str]:
    """The matching and ordering columns of a patient row whose own attributes are ``attrs``."""
    shown = study_columns(attrs, corrected)
    return {
        "patient_name": shown["patient_name"],
        "name_norm": shown["patient_name_norm"],
        "birth_date": shown["patient_birth_date"],
        "sex": shown["patient_sex"],
    }
