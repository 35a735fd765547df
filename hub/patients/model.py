"""What a patient change names and gives, independent of the message that carried it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.archive.corrected import BIRTH_DATE, ISSUER, OTHER_IDS, PATIENT_ID, PATIENT_NAME, SEX

TYPE_OF_PATIENT_ID = "00100022"
VRS = {PATIENT_NAME: "PN", BIRTH_DATE: "DA", SEX: "CS"}


class PatientError(Exception):
    """A change that cannot be made as asked; nothing of it was applied."""


class ChangeConflict(PatientError):
    """A revert that would undo a change still built upon, or one already undone."""


@dataclass(frozen=True)
class PatientKey:
    """A patient as the patient administration names it: its ID within its issuer."""

    patient_id: str
    issuer: str = ""

    def __str__(self) -> str:
        return f"{self.patient_id} ({self.issuer})" if self.issuer else self.patient_id


@dataclass(frozen=True)
class Demographics:
    """What a message gives of a patient: None leaves a value as it is, "" clears it."""

    name: str | None = None  # DICOM PN, family^given^middle^prefix^suffix
    birth_date: str | None = None  # YYYYMMDD
    sex: str | None = None  # M, F, O

    def elements(self) -> dict[str, Any]:
        """As DICOM JSON elements, for the values given."""
        given = {PATIENT_NAME: self.name, BIRTH_DATE: self.birth_date, SEX: self.sex}
        out: dict[str, Any] = {}
        for tag, value in given.items():
            if value is None:
                continue
            shown: Any = {"Alphabetic": value} if tag == PATIENT_NAME else value
            out[tag] = {"vr": VRS[tag], "Value": [shown]} if value else {"vr": VRS[tag]}
        return out


def identity(key: PatientKey) -> dict[str, Any]:
    """The ID and issuer elements of ``key``."""
    out: dict[str, Any] = {PATIENT_ID: {"vr": "LO", "Value": [key.patient_id]}}
    if key.issuer:
        out[ISSUER] = {"vr": "LO", "Value": [key.issuer]}
    return out


def with_other_id(elements: dict[str, Any], prior: PatientKey) -> dict[str, Any]:
    """``elements`` whose Other Patient IDs Sequence also lists ``prior``."""
    item = {**identity(prior), TYPE_OF_PATIENT_ID: {"vr": "CS", "Value": ["TEXT"]}}
    listed = list((elements.get(OTHER_IDS) or {}).get("Value") or [])
    if item not in listed:
        listed.append(item)
    return {**elements, OTHER_IDS: {"vr": "SQ", "Value": listed}}
