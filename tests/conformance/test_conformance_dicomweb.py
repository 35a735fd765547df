"""The statement's DICOMweb part is what the door does: its resources are the routes; each
QIDO-RS key it lists matches in each way it lists, at its level and below, and no other key is
taken; WADO-RS returns each media type and transfer syntax it lists when the Accept header asks,
and refuses others; STOW-RS takes the media type it lists."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import data_store
import numpy as np
import pydicom
import pytest
from conformance_support import patterns, served_statement
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import UID, generate_uid

from hub.archive import Source

CT = Path(get_testdata_file("CT_small.dcm"))
SAMPLE_FOLDERS = [
    Path(data_store.__file__).parent / "data",
    Path(pydicom.__file__).parent / "data" / "test_files",
]
LEVEL_RESOURCE = {"PATIENT": "studies", "STUDY": "studies", "SERIES": "series"}
LEVEL_RESOURCE["INSTANCE"] = "instances"
RESULT_TAG = {"studies": "0020000D", "series": "0020000E", "instances": "00080018"}
# Kinds of matching whose absence shows (case-insensitivity does not: SQLite's LIKE ignores
# case); a list of UIDs and multiple values are the same thing written alike.
STRUCTURAL = {"wildcard", "range", "list of UIDs", "multiple values"}
SAME_AS = {"list of UIDs": "multiple values", "multiple values": "list of UIDs"}
ABOVE = {"SERIES": "studies", "INSTANCE": "series"}  # a resource a key of the level is not for

# A real CT given a value for every key the engine can match on.
VALUES = {
    "PatientName": "Conformance^Carla",
    "PatientID": "CONF-1",
    "IssuerOfPatientID": "HOSP",
    "PatientBirthDate": "19700203",
    "PatientSex": "F",
    "StudyDate": "20240305",
    "StudyTime": "101530",
    "AccessionNumber": "ACC-77",
    "StudyID": "S77",
    "StudyDescription": "Chest survey",
    "ReferringPhysicianName": "Referrer^Rita",
    "Modality": "CT",
    "SeriesNumber": 7,
    "SeriesDescription": "Axial lung",
    "PerformedProcedureStepStartDate": "20240305",
    "PerformedProcedureStepStartTime": "101000",
    "InstanceNumber": 3,
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "ContainerIdentifier": "SLIDE-9",
}


@pytest.fixture
async def statement(hub_server) -> dict:
    return await served_statement(hub_server)


async def _ingest(hub_server, path: Path):
    result = await hub_server.archive.ingest_file(path, source=Source(door="import"))
    assert result.ok, result.message
    return result


async def _query(hub_server, resource: str, params) -> tuple[int, list]:
    async with (
        hub_server.session() as session,
        session.get(f"{hub_server.url}/dicomweb/{resource}", params=params) as resp,
    ):
        body = await resp.json(content_type=None)
        return resp.status, body


def test_the_resources_are_the_routes(hub_server, statement) -> None:
    listed = {(r["method"], r["path"]) for r in statement["dicomweb"]["resources"]}
    root = statement["dicomweb"]["root"]
    routed = set()
    for route in hub_server.app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith(root + "/") and route.method != "HEAD":
            routed.add((route.method, path))
    assert listed == routed


async def test_each_qido_key_matches_as_listed_and_at_its_level(
    hub_server, statement, tmp_path
) -> None:
    ds = dcmread(CT)
    for keyword, value in VALUES.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "ct.dcm")
    await _ingest(hub_server, tmp_path / "ct.dcm")
    ds.ModalitiesInStudy = ds.Modality  # what the study is found by

    qido = statement["dicomweb"]["qido"]
    keys = qido["matching_keys"]
    assert {k["keyword"] for k in keys} == set(VALUES) | {
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "ModalitiesInStudy",
    }
    failures = []
    for key in keys:
        keyword, level = key["keyword"], key["level"]
        assert key["tag"] == f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
        element = ds[keyword].value
        value = str(element[-1] if isinstance(element, list | MultiValue) else element)
        resource = LEVEL_RESOURCE[level]
        wanted = str(ds[RESULT_TAG[resource]].value)
        cases = [(p, m) for kind in key["matching"] for p, m in patterns(kind, value)]
        # What a kind of matching the key does not list would match, it must not.
        for kind in STRUCTURAL - set(key["matching"]):
            if SAME_AS.get(kind) not in key["matching"]:
                cases += [(p, False) for p, m in patterns(kind, value) if m]
        if {"multiple values", "list of UIDs"} & set(key["matching"]):
            other = "1.2.3" if "list of UIDs" in key["matching"] else "ZZ"
            cases += [(f"{other},{value}", True), ([other, value], True)]
        for pattern, expected in cases:
            params = [(keyword, p) for p in pattern] if isinstance(pattern, list) else None
            status, rows = await _query(hub_server, resource, params or {keyword: pattern})
            found = status == 200 and any(
                r[RESULT_TAG[resource]]["Value"][0] == wanted for r in rows
            )
            if found != expected:
                failures.append(f"{keyword}={pattern!r} at {resource}: {status} {found}")
        if level in ABOVE:
            status, body = await _query(hub_server, ABOVE[level], {keyword: value})
            if status != 400:
                failures.append(f"{keyword} at {ABOVE[level]}: {status}, not refused")
    for keyword in qido["fuzzy_matching"]:
        word = str(ds[keyword].value).split("^")[1][:4].lower()
        for fuzzy, expected in (("true", True), ("false", False)):
            params = {keyword: word, "fuzzymatching": fuzzy}
            status, rows = await _query(hub_server, "studies", params)
            found = any(r["0020000D"]["Value"][0] == ds.StudyInstanceUID for r in rows)
            if found != expected:
                failures.append(f"{keyword}={word!r} fuzzymatching={fuzzy}: {found}")
    assert failures == []
    status, body = await _query(hub_server, "instances", {"BodyPartExamined": "CHEST"})
    assert status == 400 and "not a matching key" in body["detail"]


# -- WADO-RS -----------------------------------------------------------------------------------


def _media(statement: dict, resource: str) -> list[dict]:
    """The media types of a resource (of each route that serves it: they must agree)."""
    (found,) = {
        json.dumps(r["media_types"]): r["media_types"]
        for r in statement["dicomweb"]["resources"]
        if r["resource"] == resource
    }.values()
    return found


def _samples_by_syntax() -> dict[str, list[Path]]:
    """Image files of pydicom's test data by transfer syntax, smallest first."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for folder in SAMPLE_FOLDERS:
        for path in folder.iterdir():
            try:
                ds = dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            if "Rows" in ds and "SOPInstanceUID" in ds:
                ts = str(ds.file_meta.TransferSyntaxUID)
                found.setdefault(ts, []).append((path.stat().st_size, path))
    return {ts: [p for _, p in sorted(paths)] for ts, paths in found.items()}


async def _stored_sample(hub_server, candidates: list[Path]):
    """The first candidate the archive stores (files of one origin share UIDs)."""
    for path in candidates:
        result = await hub_server.archive.ingest_file(path, source=Source(door="import"))
        if result.ok:
            return path, result
    return None, None


def _base(hub_server, result) -> str:
    return (
        f"{hub_server.url}/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}"
    )


def _parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(Content-Type, payload) of each part of a multipart/related body."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk[2:].partition(b"\r\n\r\n")
        ctype = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        )
        parts.append((ctype, payload.removesuffix(b"\r\n")))
    return parts


async def _get(hub_server, url: str, accept: str) -> tuple[int, str, bytes]:
    async with (
        hub_server.session() as session,
        session.get(url, headers={"Accept": accept}) as resp,
    ):
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_frames_come_in_each_listed_media_type_and_syntax(hub_server, statement) -> None:
    media = _media(statement, "frames")
    samples = _samples_by_syntax()
    tried = []
    for entry in media:
        for ts in entry["transfer_syntaxes"]:
            if ts["uid"] == "*":
                continue
            # Frames are decoded from a compressed syntax; otherwise stored in the one asked.
            octets = entry["media_type"] == "application/octet-stream"
            stored_in = "1.2.840.10008.1.2.4.50" if octets else ts["uid"]
            path, result = await _stored_sample(hub_server, samples.get(stored_in, []))
            if path is None:
                continue  # no test file in this syntax
            accept = f'multipart/related; type="{entry["media_type"]}"; transfer-syntax={ts["uid"]}'
            status, ctype, body = await _get(
                hub_server, _base(hub_server, result) + "/frames/1", accept
            )
            assert status == 200, (path.name, accept, body[:200])
            ((part_type, payload),) = _parts(body, ctype)
            assert part_type == f"{entry['media_type']}; transfer-syntax={ts['uid']}"
            ds = dcmread(path)
            if octets:
                pixels = pydicom.pixels.pixel_array(str(path), index=0)
                assert len(payload) == np.asarray(pixels).size * ((ds.BitsAllocated + 7) // 8)
            else:
                frames = generate_frames(
                    ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)
                )
                assert payload == next(frames)
            tried.append((entry["media_type"], ts["uid"]))
    image_types = {t for t, _ in tried}
    assert {"image/jpeg", "image/jls", "image/jp2", "image/x-dicom-rle"} <= image_types
    assert ("application/octet-stream", "1.2.840.10008.1.2.1") in tried

    # As stored: any syntax; and a compressed syntax the frames are not stored in is refused.
    path, result = await _stored_sample(hub_server, samples["1.2.840.10008.1.2.4.50"])
    base = _base(hub_server, result)
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    status, ctype, body = await _get(hub_server, base + "/frames/1", accept)
    ((part_type, payload),) = _parts(body, ctype)
    assert part_type.endswith("transfer-syntax=1.2.840.10008.1.2.4.50")
    assert payload == next(generate_frames(dcmread(path).PixelData, number_of_frames=1))
    listed = {ts["uid"] for entry in media for ts in entry["transfer_syntaxes"]}
    assert "1.2.840.10008.1.2.4.201" in listed  # HTJ2K: listed for frames stored so
    status, _, _ = await _get(hub_server, base + "/frames/1", 'multipart/related; type="image/jp2"')
    assert status == 406


async def test_instances_come_as_stored_or_decoded_as_listed(hub_server, statement) -> None:
    (entry,) = _media(statement, "instances")
    assert entry["media_type"] == 'multipart/related; type="application/dicom"'
    samples = _samples_by_syntax()
    path, result = await _stored_sample(hub_server, samples["1.2.840.10008.1.2.4.50"])
    base = _base(hub_server, result)
    for ts in entry["transfer_syntaxes"]:
        accept = f"{entry['media_type']}; transfer-syntax={ts['uid']}"
        status, ctype, body = await _get(hub_server, base, accept)
        assert status == 200, accept
        ((part_type, payload),) = _parts(body, ctype)
        if ts["uid"] == "*":
            assert part_type == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"
            assert payload == path.read_bytes()
        else:
            assert part_type == f"application/dicom; transfer-syntax={ts['uid']}"
            sent = dcmread(io.BytesIO(payload))
            assert sent.file_meta.TransferSyntaxUID == ts["uid"]
            assert not UID(ts["uid"]).is_compressed
            assert sent.pixel_array.shape == dcmread(path).pixel_array.shape
    unlisted = f"{entry['media_type']}; transfer-syntax=1.2.840.10008.1.2.4.90"
    status, _, _ = await _get(hub_server, base, unlisted)
    assert status == 406


async def test_rendered_and_json_resources_answer_their_media_types(hub_server, statement) -> None:
    result = await _ingest(hub_server, CT)
    base = _base(hub_server, result)
    for resource, url in (("rendered", base + "/rendered"), ("thumbnail", base + "/thumbnail")):
        for entry in _media(statement, resource):
            status, ctype, body = await _get(hub_server, url, entry["media_type"])
            assert status == 200 and ctype == entry["media_type"], (resource, ctype)
            Image.open(io.BytesIO(body)).verify()
        status, _, _ = await _get(hub_server, url, "image/gif")
        assert status == 406
    for resource, url in (
        ("metadata", base + "/metadata"),
        ("search for instances", f"{hub_server.url}/dicomweb/instances"),
    ):
        ((entry),) = _media(statement, resource)
        status, ctype, _ = await _get(hub_server, url, entry["media_type"])
        assert status == 200 and ctype.startswith(entry["media_type"]), resource


async def test_stow_takes_the_listed_media_type_and_no_other(hub_server, statement) -> None:
    stow = statement["dicomweb"]["stow"]
    (entry,) = stow["media_types"]
    ds = dcmread(CT)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert str(ds.file_meta.TransferSyntaxUID) in {t["uid"] for t in entry["transfer_syntaxes"]}
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + buffer.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    for media_type, expected in (
        (entry["media_type"], 200),
        ('multipart/related; type="application/dicom+json"', 415),
    ):
        headers = {"Content-Type": f"{media_type}; boundary={boundary}"}
        async with (
            hub_server.session() as session,
            session.post(f"{hub_server.url}/dicomweb/studies", data=body, headers=headers) as resp,
        ):
            assert resp.status == expected, await resp.text()
            assert resp.content_type == stow["response"]
