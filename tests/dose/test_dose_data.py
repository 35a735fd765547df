"""The data files: region codes agree with DICOM's SNOMED mapping and CID 4030, and the table
of coefficients is complete for what it claims."""

from __future__ import annotations

import json

from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr._concepts_dict import concepts
from pydicom.sr._snomed_dict import mapping

from hub.dose.estimate import DATA, load_k_table, load_regions

REGIONS = json.loads((DATA / "regions.json").read_text())
K = json.loads((DATA / "k_factors.json").read_text())


def test_each_legacy_code_maps_to_the_snomed_ct_code_dicom_gives() -> None:
    for concept in REGIONS["concepts"]:
        assert mapping["SRT"][concept["srt"]] == concept["sct"][0], concept["name"]


def test_each_current_code_is_in_cid_4030() -> None:
    in_4030 = {code for name in cid_concepts[4030]["SCT"] for code in concepts["SCT"][name]}
    for concept in REGIONS["concepts"]:
        assert concept["sct"][-1] in in_4030, concept["name"]


def test_every_region_row_has_every_age_column() -> None:
    table = load_k_table()
    rows = {c["row"] for c in REGIONS["concepts"]}
    rows |= {p["row"] for p in REGIONS["phantoms"].values() if isinstance(p, dict)}
    rows |= {row for _, row in REGIONS["words"]["match"]}
    assert rows == set(table.rows)
    for row, values in table.rows.items():
        assert set(values) == set(K["columns"]), row
        for column in ("newborn", "1y", "5y", "10y", "adult"):
            assert 0 < values[column] < 0.1, (row, column)


def test_checked_values_name_existing_cells_and_sources_are_cited() -> None:
    table = load_k_table()
    for row, columns in table.checked.items():
        for column in columns:
            assert table.k(row, column) is not None
    assert "AAPM Report No. 96" in K["sources"]["icrp60"]
    assert "Shrimpton" in K["sources"]["icrp60"]
    assert "Deak" in K["sources"]["icrp103"]


def test_every_code_of_a_concept_reaches_its_row() -> None:
    regions = load_regions()
    for concept in REGIONS["concepts"]:
        assert regions.by_code[("SRT", concept["srt"])] == concept["row"]
        for code in concept["sct"]:
            assert regions.by_code[("SCT", code)] == concept["row"]
