"""QIDO-RS matching: exact, wildcards, ranges, UID lists, fuzzy names, includefield, paging."""

from __future__ import annotations

import asyncio
import copy

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from dicomweb_support import STOW_TYPE, dicom_bytes, multipart_body
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

PEOPLE = [
    # name, id, study date, study time, modality, accession
    ("Müller^Jürgen", "P1", "20240105", "083000", "US", "ACC1"),
    ("MULLER^Anna", "P2", "20240220", "101500", "SM", "ACC2"),
    ("O'Brien^Seán", "P3", "20231130", "235959", "CT", "ACC3"),
    ("Smith^John", "P4", "20240301", "120000", "US", "XYZ9"),
]


@pytest.fixture
async def populated(hub_server):
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    bodies = []
    studies = []
    for name, pid, date, time, modality, accession in PEOPLE:
        ds = copy.deepcopy(base)
        ds.PatientName, ds.PatientID = name, pid
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.StudyDate, ds.StudyTime, ds.Modality, ds.AccessionNumber = (
            date,
            time,
            modality,
            accession,
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = generate_uid()
        studies.append(str(ds.StudyInstanceUID))
        bodies.append(dicom_bytes(ds))
    async with (
        hub_server.session() as session,
        session.post(
            hub_server.url + "/dicomweb/studies",
            data=multipart_body([("application/dicom", b) for b in bodies]),
            headers={"Content-Type": STOW_TYPE},
        ) as r,
    ):
        assert r.status == 200
    return hub_server, studies


async def query(hub, path: str, **params) -> tuple[int, list, dict]:
    async with (
        hub.session() as session,
        session.get(hub.url + "/dicomweb" + path, params=params) as r,
    ):
        body = await r.json(content_type=None) if r.status == 200 else await r.text()
        return r.status, body, dict(r.headers)


def ids(rows: list) -> list[str]:
    return sorted(r["00100020"]["Value"][0] for r in rows)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientID": "P2"}, ["P2"]),
        ({"PatientName": "mul*"}, ["P2"]),  # wildcard, case-insensitive, no accent folding
        ({"PatientName": "M?ller*"}, ["P1", "P2"]),
        ({"StudyDate": "20240101-20240228"}, ["P1", "P2"]),
        ({"StudyDate": "-20231231"}, ["P3"]),
        ({"StudyDate": "20240301-"}, ["P4"]),
        ({"StudyTime": "100000-130000"}, ["P2", "P4"]),
        ({"ModalitiesInStudy": "US"}, ["P1", "P4"]),
        ({"ModalitiesInStudy": "SM\\CT"}, ["P2", "P3"]),
        ({"ModalitiesInStudy": "CT,US"}, ["P1", "P3", "P4"]),  # as OHIF sends a list
        ({"ModalitiesInStudy": "CT, SM"}, ["P2", "P3"]),
        ({"PatientSex": "O,F"}, ["P1", "P2", "P3", "P4"]),  # CT_small.dcm's PatientSex is O
        ({"AccessionNumber": "ACC*"}, ["P1", "P2", "P3"]),
        ({"00100020": "P3"}, ["P3"]),
        ({"PatientName": "muller", "fuzzymatching": "true"}, ["P1", "P2"]),
        ({"PatientName": "sean", "fuzzymatching": "true"}, ["P3"]),
        ({"PatientName": "jur", "fuzzymatching": "true"}, ["P1"]),
        ({"PatientName": "anna mull", "fuzzymatching": "true"}, ["P2"]),
    ],
)
async def test_study_matching(populated, params: dict, expected: list[str]) -> None:
    hub, _ = populated
    status, rows, _ = await query(hub, "/studies", **params)
    assert status == 200
    assert ids(rows) == expected


async def test_uid_list(populated) -> None:
    hub, studies = populated
    status, rows, _ = await query(hub, "/studies", StudyInstanceUID=f"{studies[0]},{studies[2]}")
    assert ids(rows) == ["P1", "P3"]
    status, rows, _ = await query(hub, "/studies", StudyInstanceUID=f"{studies[1]}\\{studies[3]}")
    assert ids(rows) == ["P2", "P4"]


async def test_series_modality_list(populated) -> None:
    hub, _ = populated
    for value in ("SM,CT", "SM\\CT"):
        status, rows, _ = await query(hub, "/series", Modality=value)
        assert status == 200
        assert ids(rows) == ["P2", "P3"], value


async def test_dicomweb_client_sends_lists_with_commas(populated) -> None:
    hub, _ = populated

    def search(modalities: str | list[str]) -> list[dict]:
        client = DICOMwebClient(url=hub.url + "/dicomweb", headers=hub.admin_headers)
        return client.search_for_studies(search_filters={"ModalitiesInStudy": modalities})

    # A Python list goes out as the key repeated, a string as it is.
    for modalities in (["CT", "US"], "CT,US"):
        assert ids(await asyncio.to_thread(search, modalities)) == ["P1", "P3", "P4"]


async def test_repeated_single_value_key_is_refused(populated) -> None:
    hub, _ = populated
    async with (
        hub.session() as session,
        session.get(hub.url + "/dicomweb/studies?PatientID=P1&PatientID=P2") as r,
    ):
        assert r.status == 400
        assert "PatientID" in await r.text()


async def test_includefield_list_and_all(populated) -> None:
    hub, studies = populated
    _, rows, _ = await query(hub, f"/studies/{studies[0]}/instances")
    assert "00280030" not in rows[0]  # PixelSpacing is not a default instance attribute
    _, rows, _ = await query(
        hub, f"/studies/{studies[0]}/instances", includefield="PixelSpacing,00180050"
    )
    assert "00280030" in rows[0] and "00180050" in rows[0]
    _, rows, _ = await query(hub, f"/studies/{studies[0]}/instances", includefield="all")
    assert "00180050" in rows[0] and "00280030" in rows[0] and "00200032" in rows[0]


async def test_limit_offset_and_warning(populated) -> None:
    hub, _ = populated
    _, first, headers = await query(hub, "/studies", limit="2")
    assert len(first) == 2
    assert "Warning" in headers
    _, rest, headers = await query(hub, "/studies", limit="2", offset="2")
    assert len(rest) == 2
    assert "Warning" not in headers
    assert ids(first + rest) == ["P1", "P2", "P3", "P4"]


async def test_cap_on_unbounded_queries(populated) -> None:
    hub, _ = populated
    hub.settings.max_query_results = 3
    _, rows, headers = await query(hub, "/studies")
    assert len(rows) == 3
    assert "Warning" in headers


async def test_every_route(populated) -> None:
    hub, studies = populated
    _, series_rows, _ = await query(hub, f"/studies/{studies[0]}/series")
    series = series_rows[0]["0020000E"]["Value"][0]
    for path, count in [
        ("/studies", 4),
        ("/series", 4),
        ("/instances", 4),
        (f"/studies/{studies[0]}/series", 1),
        (f"/studies/{studies[0]}/instances", 1),
        (f"/studies/{studies[0]}/series/{series}/instances", 1),
    ]:
        status, rows, headers = await query(hub, path)
        assert status == 200, path
        assert headers["Content-Type"].startswith("application/dicom+json")
        assert len(rows) == count, path
        assert all("00081190" in r for r in rows), path


@pytest.mark.parametrize(
    "params",
    [
        {"NoSuchKeyword": "x"},
        {"limit": "-1"},
        {"fuzzymatching": "maybe"},
        {"includefield": "bogus"},
        {"ModalitiesInStudy": ",\\"},  # a list of no values
    ],
)
async def test_bad_queries_get_400(populated, params: dict) -> None:
    hub, _ = populated
    status, body, headers = await query(hub, "/studies", **params)
    assert status == 400
    assert "Warning" in headers


async def test_series_key_not_allowed_at_study_level(populated) -> None:
    hub, _ = populated
    status, _, _ = await query(hub, "/studies", Modality="US")
    assert status == 400


async def test_includefield_a_level_cannot_hold_is_named_in_a_warning(populated) -> None:
    hub, _ = populated
    # Modality is a series attribute; a study result holds Modalities in Study instead.
    status, rows, headers = await query(hub, "/studies", includefield="00080060")
    assert status == 200 and len(rows) == 4
    assert "00080060 (Modality)" in headers["Warning"]
    assert all("00080061" in r for r in rows)
    status, rows, headers = await query(
        hub, "/series", includefield="Modality,StudyDescription,00180050"
    )
    assert status == 200 and all("00080060" in r for r in rows)
    assert "00180050 (SliceThickness)" in headers["Warning"]
    assert "00080060" not in headers["Warning"] and "StudyDescription" not in headers["Warning"]
    _, _, headers = await query(hub, "/studies", includefield="StudyDescription")
    assert "Warning" not in headers
    _, _, headers = await query(hub, "/instances", includefield="00180050")
    assert "Warning" not in headers
