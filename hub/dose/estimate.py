"""Effective dose estimates, E = k x DLP, from the conversion-coefficient table in data/.

The region comes from the event's coded target region; failing that, in order, from the CTDI
phantom type, the acquisition protocol and the study description, each fallback flagged. The
age column comes from the patient's age at the study. A child's body DLP referenced to the
32 cm phantom is flagged and left as it is: the paediatric coefficients assume the 16 cm
phantom, and converting would need scanner data a dose report does not carry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from hub.config import DoseSettings, SettingsError
from hub.dose.rdsr import CtEvent

DATA = Path(__file__).with_name("data")
HEAD_ROWS = frozenset({"head", "head_neck", "neck"})
BODY_PHANTOM = ("DCM", "113691")


@dataclass(frozen=True)
class KTable:
    id: str
    rows: dict[str, dict[str, float | None]]
    bands: tuple[tuple[str, float | None], ...]
    checked: dict[str, frozenset[str]]

    def column_for(self, years: float) -> str:
        for column, upper in self.bands:
            if upper is None or years < upper:
                return column
        raise ValueError(f"table {self.id}: no age band for {years} years")

    def k(self, row: str, column: str) -> float | None:
        return self.rows.get(row, {}).get(column)

    def is_checked(self, row: str, column: str) -> bool:
        return column in self.checked.get(row, frozenset())


@dataclass(frozen=True)
class Regions:
    by_code: dict[tuple[str, str], str]  # (SRT|SCT, code value) -> table row
    phantoms: dict[tuple[str, str], str]
    words: tuple[tuple[re.Pattern[str], str], ...]


@lru_cache(maxsize=4)
def load_k_table(path: Path = DATA / "k_factors.json") -> KTable:
    data = json.loads(path.read_text())
    return KTable(
        id=data["id"],
        rows=data["rows"],
        bands=tuple((c, u) for c, u in data["age_bands"]["bands"]),
        checked={r: frozenset(c) for r, c in data["verification"]["checked"].items()},
    )


def current_table(settings: DoseSettings) -> KTable:
    """The table new estimates are made with: the configured one, else the one shipped."""
    if settings.k_table is None:
        return load_k_table()
    try:
        return load_k_table(settings.k_table)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError("dose k_table", f"{settings.k_table}: cannot be read: {exc}") from None


@lru_cache(maxsize=4)
def load_regions(path: Path = DATA / "regions.json") -> Regions:
    data = json.loads(path.read_text())
    by_code: dict[tuple[str, str], str] = {}
    for concept in data["concepts"]:
        by_code[("SRT", concept["srt"])] = concept["row"]
        for sct in concept["sct"]:
            by_code[("SCT", sct)] = concept["row"]
    phantoms = {
        ("DCM", code): entry["row"]
        for code, entry in data["phantoms"].items()
        if isinstance(entry, dict)
    }
    words = tuple(
        (re.compile(rf"(?<![a-z]){re.escape(w)}(?![a-z])", re.IGNORECASE), row)
        for w, row in data["words"]["match"]
    )
    return Regions(by_code, phantoms, words)


@dataclass(frozen=True)
class Age:
    years: float | None
    source: str  # "birth_date", "patient_age" or "" (unknown)


def age_at(birth_date: str, study_date: str, patient_age: str) -> Age:
    """Age at the study from the birth and study dates, else from PatientAge (AS)."""
    born, on = _date(birth_date), _date(study_date)
    if born is not None and on is not None and on >= born:
        return Age((on - born).days / 365.25, "birth_date")
    m = re.fullmatch(r"(\d{3})([DWMY])", patient_age.strip().upper())
    if m:
        per_year = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0}[m.group(2)]
        return Age(int(m.group(1)) / per_year, "patient_age")
    return Age(None, "")


def _date(text: str) -> date | None:
    text = text.strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


@dataclass(frozen=True)
class RegionChoice:
    row: str | None
    source: str  # target_region | phantom | protocol | study_description | ""
    flags: tuple[str, ...]


def choose_region(event: CtEvent, study_description: str, regions: Regions) -> RegionChoice:
    if event.target_region is not None:
        row = regions.by_code.get(event.target_region.key)
        if row is not None:
            return RegionChoice(row, "target_region", ())
        missing = ("region_code_unknown",)
    else:
        missing = ("region_missing",)
    if event.phantom is not None and (row := regions.phantoms.get(event.phantom.key)):
        return RegionChoice(row, "phantom", (*missing, "region_from_phantom"))
    for source, text in (("protocol", event.protocol), ("study_description", study_description)):
        for pattern, row in regions.words:
            if pattern.search(text):
                return RegionChoice(row, source, (*missing, f"region_from_{source}"))
    return RegionChoice(None, "", (*missing, "region_not_found"))


@dataclass(frozen=True)
class Estimate:
    table_id: str
    column: str
    row: str
    region_source: str
    k: float
    dlp_mgycm: float
    e_msv: float
    flags: tuple[str, ...]


def estimates(
    event: CtEvent, age: Age, study_description: str, table: KTable, regions: Regions
) -> list[Estimate]:
    """The age-specific (ICRP 60) estimate of one event and, for an adult, the ICRP 103 one;
    none for an event without a DLP or a region."""
    if event.dlp_mgycm is None:
        return []
    choice = choose_region(event, study_description, regions)
    if choice.row is None:
        return []
    flags = list(choice.flags)
    if age.years is None:
        column = "adult"
        flags.append("age_unknown")
    else:
        column = table.column_for(age.years)
        if age.source == "patient_age":
            flags.append("age_from_patient_age")
    if column != "adult" and choice.row not in HEAD_ROWS and _body_phantom(event):
        flags.append("child_body_dlp_32cm")
    columns = [column, "adult_icrp103"] if column == "adult" else [column]
    out = []
    for col in columns:
        k = table.k(choice.row, col)
        if k is None:
            continue
        own = flags if table.is_checked(choice.row, col) else [*flags, "k_unverified"]
        out.append(
            Estimate(
                table.id,
                col,
                choice.row,
                choice.source,
                k,
                event.dlp_mgycm,
                k * event.dlp_mgycm,
                tuple(own),
            )
        )
    return out


def _body_phantom(event: CtEvent) -> bool:
    return event.phantom is not None and event.phantom.key == BODY_PHANTOM
