"""Radiation Dose SR reading (TID 10001 / 10011): CT irradiation events by code, never by text.

A report is an X-Ray Radiation Dose SR, or an Enhanced or Comprehensive SR, whose root concept is
(113701, DCM, "X-Ray Radiation Dose Report"). Every content item is found by its coding scheme
and code value; the meanings senders write are ignored. CT events (113819) give the numbers an
estimate needs; projection events (TID 10003) are not read here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom import Dataset

DOSE_SR_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.88.67",  # X-Ray Radiation Dose SR
        "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
        "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    }
)

DCM = "DCM"
XRAY_DOSE_REPORT = (DCM, "113701")
CT_ACCUMULATED = (DCM, "113811")
CT_DLP_TOTAL = (DCM, "113813")
CT_ACQUISITION = (DCM, "113819")
CT_DOSE = (DCM, "113829")
IRRADIATION_EVENT_UID = (DCM, "113769")
TARGET_REGION = (DCM, "123014")
ACQUISITION_PROTOCOL = (DCM, "125203")
ACQUISITION_TYPE = (DCM, "113820")
MEAN_CTDIVOL = (DCM, "113830")
DLP = (DCM, "113838")
PHANTOM_TYPE = (DCM, "113835")
EFFECTIVE_DOSE = (DCM, "113839")

# UCUM codes senders use for each quantity, with the factor to the unit stored here.
DLP_UNITS = {"mGy.cm": 1.0, "mGycm": 1.0, "mGy*cm": 1.0, "Gy.cm": 1000.0, "mGy.mm": 0.1}
DOSE_UNITS = {"mGy": 1.0, "Gy": 1000.0}
EFFECTIVE_DOSE_UNITS = {"mSv": 1.0, "Sv": 1000.0, "uSv": 0.001}

# Coding schemes that name the same SNOMED concepts under an older designator.
SNOMED_SCHEMES = {"SRT": "SRT", "SNM3": "SRT", "99SDM": "SRT", "SCT": "SCT"}


class RdsrError(ValueError):
    """The dose report is malformed: the message says where."""


@dataclass(frozen=True)
class Code:
    scheme: str
    value: str
    meaning: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (SNOMED_SCHEMES.get(self.scheme, self.scheme), self.value)


@dataclass(frozen=True)
class CtEvent:
    """One CT irradiation event (TID 10013)."""

    uid: str
    target_region: Code | None
    protocol: str
    acquisition_type: Code | None
    ctdivol_mgy: float | None
    dlp_mgycm: float | None
    phantom: Code | None
    scanner_effective_dose_msv: float | None


@dataclass(frozen=True)
class DoseReport:
    """What one dose report says about CT exposure."""

    accumulated_dlp_mgycm: float | None
    events: tuple[CtEvent, ...] = field(default_factory=tuple)


def is_dose_report(ds: Dataset) -> bool:
    if str(ds.get("SOPClassUID", "")) not in DOSE_SR_CLASSES:
        return False
    root = _concept(ds)
    return root is not None and root.key == XRAY_DOSE_REPORT


def parse(ds: Dataset) -> DoseReport:
    """The CT content of a dose report; ``RdsrError`` when it is malformed."""
    if not is_dose_report(ds):
        raise RdsrError("not an X-Ray Radiation Dose Report (root concept 113701, DCM)")
    content = _children(ds)
    if not content:
        raise RdsrError("the report has no content items")
    total = None
    if (accumulated := _first(content, CT_ACCUMULATED)) is not None:
        total = _number(_first(_children(accumulated), CT_DLP_TOTAL), DLP_UNITS, "DLP total")
    events = tuple(_event(item, n) for n, item in enumerate(_all(content, CT_ACQUISITION), 1))
    uids = [e.uid for e in events]
    if len(set(uids)) != len(uids):
        raise RdsrError("two CT Acquisition items share an Irradiation Event UID")
    return DoseReport(total, events)


def _event(container: Dataset, n: int) -> CtEvent:
    items = _children(container)
    uid_item = _first(items, IRRADIATION_EVENT_UID)
    uid = str(uid_item.get("UID", "")).strip() if uid_item is not None else ""
    if not uid:
        raise RdsrError(f"CT Acquisition {n} has no Irradiation Event UID (113769)")
    dose = _children(_first(items, CT_DOSE))
    ctdivol = _first(dose, MEAN_CTDIVOL)
    phantom = _code(_first(dose, PHANTOM_TYPE))
    if phantom is None and ctdivol is not None:  # some scanners qualify the CTDIvol instead
        phantom = _code(_first(_children(ctdivol), PHANTOM_TYPE))
    protocol = _first(items, ACQUISITION_PROTOCOL)
    where = f"CT Acquisition {n}"
    return CtEvent(
        uid=uid,
        target_region=_code(_first(items, TARGET_REGION)),
        protocol=str(protocol.get("TextValue", "")).strip() if protocol is not None else "",
        acquisition_type=_code(_first(items, ACQUISITION_TYPE)),
        ctdivol_mgy=_number(ctdivol, DOSE_UNITS, f"{where} CTDIvol"),
        dlp_mgycm=_number(_first(dose, DLP), DLP_UNITS, f"{where} DLP"),
        phantom=phantom,
        scanner_effective_dose_msv=_number(
            _first(dose, EFFECTIVE_DOSE), EFFECTIVE_DOSE_UNITS, f"{where} effective dose"
        ),
    )


def _children(item: Dataset | None) -> list[Dataset]:
    if item is None:
        return []
    return list(item.get("ContentSequence", None) or [])


def _concept(item: Dataset) -> Code | None:
    return _first_code(item.get("ConceptNameCodeSequence", None))


def _code(item: Dataset | None) -> Code | None:
    if item is None:
        return None
    return _first_code(item.get("ConceptCodeSequence", None))


def _first_code(seq: Iterable[Dataset] | None) -> Code | None:
    for c in seq or ():
        value = str(c.get("CodeValue", "") or c.get("LongCodeValue", "") or "").strip()
        scheme = str(c.get("CodingSchemeDesignator", "") or "").strip()
        if value and scheme:
            return Code(scheme, value, str(c.get("CodeMeaning", "") or ""))
    return None


def _all(items: Iterable[Dataset], code: tuple[str, str]) -> Iterator[Dataset]:
    for item in items:
        concept = _concept(item)
        if concept is not None and concept.key == code:
            yield item


def _first(items: Iterable[Dataset], code: tuple[str, str]) -> Dataset | None:
    return next(_all(items, code), None)


def _number(item: Dataset | None, units: dict[str, float], what: str) -> float | None:
    """The value of a NUM item in the unit stored here; None when absent or given no value."""
    if item is None:
        return None
    measured = item.get("MeasuredValueSequence", None)
    if not measured:
        return None
    m = measured[0]
    unit = _first_code(m.get("MeasurementUnitsCodeSequence", None))
    if unit is None or unit.value not in units:
        raise RdsrError(
            f"{what}: unit {unit.value if unit else 'missing'} is not one of {sorted(units)}"
        )
    try:
        value = float(m.get("NumericValue"))
    except (TypeError, ValueError):
        raise RdsrError(f"{what}: {m.get('NumericValue')!r} is not a number") from None
    if value != value or value < 0:
        raise RdsrError(f"{what}: {value} is not a dose")
    return value * units[unit.value]
