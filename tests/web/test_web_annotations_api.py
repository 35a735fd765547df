"""/api/annotations: what a pathologist draws is stored as a DICOM annotation instance through
the ingest path, read back in the slide's pixels, versioned per person, and refused with a
reason when it cannot be stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hubtest import HubServer, dciodvfy_errors, free_port, running_hub
from web_support import ingest_all

from hub.archive.query import Query
from hub.config import Settings
from hub.security.accounts import create_user, issue_token
from wsi import ConvertOptions, convert_slide

ANN = "1.2.840.10008.5.1.4.1.1.91.1"
SHAPES = [
    {"kind": "line", "label": "margin", "points": [[100, 120], [900, 700]]},
    {"kind": "point", "label": "mitosis", "points": [[400.5, 300.25]]},
    {"kind": "point", "label": "mitosis", "points": [[410, 310]]},
    {"kind": "rectangle", "label": "hot spot", "points": [[50, 60], [500, 400]]},
    {"kind": "polygon", "label": "tumour", "points": [[600, 600], [1200, 650], [900, 1100]]},
]


@pytest.fixture
async def slide_hub(tmp_path: Path, corpus: Path) -> AsyncIterator[tuple[HubServer, str, str]]:
    """A hub holding CMU-1-Small-Region; yields it, the study UID and the level-0 SOP UID."""
    paths = await asyncio.to_thread(
        convert_slide,
        corpus / "wsi" / "CMU-1-Small-Region.svs",
        tmp_path / "slide",
        options=ConvertOptions(include_label=False, include_overview=False),
    )
    async with running_hub(Settings(data_dir=tmp_path / "data", port=free_port())) as hub:
        study = await ingest_all(hub.archive, paths)
        level0 = pydicom.dcmread(paths[0], stop_before_pixels=True).SOPInstanceUID
        yield hub, study, level0


async def _as(hub: HubServer, user: str, role: str) -> dict[str, str]:
    await create_user(hub.archive.engine, user, role, None)
    _, secret = await issue_token(hub.archive.engine, user)
    return {"Authorization": f"Bearer {secret}"}


async def _ann_instances(hub: HubServer, study: str) -> list[dict]:
    rows = await hub.archive.search(Query(level="INSTANCE", keys={"StudyInstanceUID": study}))
    return [r for r in rows if r.get("00080016", {}).get("Value") == [ANN]]


async def test_save_and_read_back(slide_hub) -> None:
    hub, study, level0 = slide_hub
    url = f"{hub.url}/api/annotations/{study}?image={level0}"
    async with hub.session() as http:
        async with http.post(url, json={"annotations": SHAPES}) as r:
            assert r.status == 201, await r.text()
            saved = await r.json()
        async with http.get(url) as r:
            assert r.status == 200
            (mine,) = (await r.json())["sets"]
    assert saved["count"] == 5
    assert mine["mine"] and mine["creator"] == "test-admin" and mine["sop_uid"] == saved["sop_uid"]
    got = sorted(mine["annotations"], key=lambda s: (s["kind"], s["points"]))
    want = sorted(SHAPES, key=lambda s: (s["kind"], s["points"]))
    assert [(s["kind"], s["label"]) for s in got] == [(s["kind"], s["label"]) for s in want]
    for g, w in zip(got, want, strict=True):
        flat = [v for point in g["points"] for v in point]
        assert flat == pytest.approx([v for point in w["points"] for v in point], abs=0.01)

    # A DICOM instance like any other: in QIDO, and conformant.
    (row,) = await _ann_instances(hub, study)
    assert row["00080060"]["Value"] == ["ANN"]
    (ref,) = await hub.archive.instances(study, sop_uid=saved["sop_uid"])
    stored = hub.archive.store.path(ref.sha256)
    assert await asyncio.to_thread(dciodvfy_errors, stored) in ([], None)
    ds = pydicom.dcmread(stored)
    line = next(g for g in ds.AnnotationGroupSequence if g.GraphicType == "POLYLINE")
    values = line.MeasurementsSequence[0].MeasurementValuesSequence[0].FloatingPointValues
    (length_um,) = np.frombuffer(values, dtype="<f4")  # OF
    spacing_mm = 0.000499  # CMU-1: 0.499 um/px; the line spans 800 x 580 px
    assert length_um == pytest.approx((800**2 + 580**2) ** 0.5 * spacing_mm * 1000, rel=1e-3)
    outline = next(g for g in ds.AnnotationGroupSequence if g.GraphicType == "POLYGON")
    values = outline.MeasurementsSequence[0].MeasurementValuesSequence[0].FloatingPointValues
    (area_mm2,) = np.frombuffer(values, dtype="<f4")
    triangle_px = abs(600 * (650 - 1100) + 1200 * (1100 - 600) + 900 * (600 - 650)) / 2
    assert area_mm2 == pytest.approx(triangle_px * spacing_mm**2, rel=1e-3)


async def test_a_new_save_is_a_new_version_in_the_same_series(slide_hub) -> None:
    hub, study, level0 = slide_hub
    url = f"{hub.url}/api/annotations/{study}?image={level0}"
    async with hub.session() as http:
        async with http.post(url, json={"annotations": SHAPES}) as r:
            first = await r.json()
        async with http.post(url, json={"annotations": SHAPES[:1]}) as r:
            second = await r.json()
        async with http.get(url) as r:
            (newest,) = (await r.json())["sets"]
    assert second["series_uid"] == first["series_uid"]
    assert newest["sop_uid"] == second["sop_uid"] and len(newest["annotations"]) == 1
    assert len(await _ann_instances(hub, study)) == 2  # the first stays as history


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"annotations": [{"kind": "circle", "points": [[1, 1]]}]}, "kind must be"),
        ({"annotations": [{"kind": "point", "points": [[1, 1], [2, 2]]}]}, "has 1 point"),
        ({"annotations": [{"kind": "polygon", "points": [[1, 1], [2, 2]]}]}, "has 3 to"),
        ({"annotations": [{"kind": "point", "points": [[99999, 1]]}]}, "within the"),
        ({"annotations": [{"kind": "point", "points": [["a", 1]]}]}, "numbers"),
        ({"annotations": [{"kind": "point", "label": "x" * 65, "points": [[1, 1]]}]}, "label"),
        ({"annotations": "everything"}, "must be a list"),
    ],
)
async def test_bad_shapes_are_refused_with_a_reason(slide_hub, body, reason) -> None:
    hub, study, level0 = slide_hub
    async with hub.session() as http:
        url = f"{hub.url}/api/annotations/{study}?image={level0}"
        async with http.post(url, json=body) as r:
            assert r.status == 400
            assert reason in (await r.json())["detail"]
    assert await _ann_instances(hub, study) == []


async def test_unknown_or_wrong_images_are_refused(slide_hub) -> None:
    hub, study, level0 = slide_hub
    async with hub.session() as http:
        for query, status in (("", 404), ("?image=1.2.3", 404)):
            async with http.get(f"{hub.url}/api/annotations/{study}{query}") as r:
                assert r.status == status
        async with http.post(
            f"{hub.url}/api/annotations/{study}?image={level0}", data=b"{not json"
        ) as r:
            assert r.status == 400


async def test_who_may_annotate(slide_hub) -> None:
    """Pathologists annotate and see each other's sets; a role that only reads cannot save."""
    hub, study, level0 = slide_hub
    url = f"{hub.url}/api/annotations/{study}?image={level0}"
    pathologist = await _as(hub, "dr-lee", "pathologist")
    specialist = await _as(hub, "sono", "specialist")  # reads images, does not annotate
    async with hub.session() as http:
        async with http.post(url, json={"annotations": SHAPES}) as r:
            assert r.status == 201
        async with http.post(url, json={"annotations": SHAPES[:2]}, headers=pathologist) as r:
            assert r.status == 201
        async with http.post(url, json={"annotations": SHAPES}, headers=specialist) as r:
            assert r.status == 403
        async with http.get(url, headers=pathologist) as r:
            sets = (await r.json())["sets"]
    assert {(s["creator"], s["mine"], len(s["annotations"])) for s in sets} == {
        ("dr-lee", True, 2),
        ("test-admin", False, 5),
    }


async def test_a_freehand_outline_back_to_its_start_is_closed_once(slide_hub) -> None:
    hub, study, level0 = slide_hub
    loop = [[100, 100], [400, 120], [400, 120], [380, 400], [90, 380], [100, 100]]
    url = f"{hub.url}/api/annotations/{study}?image={level0}"
    async with hub.session() as http:
        body = {"annotations": [{"kind": "polygon", "label": "tumour", "points": loop}]}
        async with http.post(url, json=body) as r:
            assert r.status == 201, await r.text()
        dot = {"kind": "polygon", "points": [[5, 5], [5, 5], [5, 5]]}
        async with http.post(url, json={"annotations": [dot]}) as r:
            assert r.status == 400 and "has 3 to" in (await r.json())["detail"]
        async with http.get(url) as r:
            (mine,) = (await r.json())["sets"]
    (outline,) = mine["annotations"]
    assert len(outline["points"]) == 4  # the repeated point and the closing one dropped


async def test_a_pathologists_annotation_leaves_a_clinics_slide_open_to_it(
    slide_hub, tmp_path: Path
) -> None:
    """A clinic's slide, annotated by a pathologist: the clinic still opens its study and the
    slide's annotations (its part of them: none), and the pathologist sees its own set."""
    from pydicom.uid import generate_uid

    from hub.archive import Source

    hub, study, level0 = slide_hub
    (ref,) = await hub.archive.instances(study, sop_uid=level0)
    ds = pydicom.dcmread(hub.archive.store.path(ref.sha256))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "clinic-slide.dcm", enforce_file_format=True)
    stored = await hub.archive.ingest_file(
        tmp_path / "clinic-slide.dcm", source=Source("stow", actor="clinic-x")
    )
    assert stored.ok, stored.message
    clinic = await _as(hub, "clinic-x", "clinic")
    pathologist = await _as(hub, "dr-lee", "pathologist")
    url = f"{hub.url}/api/annotations/{ds.StudyInstanceUID}?image={ds.SOPInstanceUID}"
    metadata = f"{hub.url}/dicomweb/studies/{ds.StudyInstanceUID}/metadata"
    async with hub.session() as http:
        async with http.post(url, json={"annotations": SHAPES[:2]}, headers=pathologist) as r:
            assert r.status == 201, await r.text()
        async with http.get(url, headers=clinic) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["sets"] == []
        async with http.get(metadata, headers=clinic) as r:
            assert r.status == 200
            (row,) = await r.json(content_type=None)
            assert row["00080018"]["Value"] == [ds.SOPInstanceUID]
        async with http.get(url, headers=pathologist) as r:
            (theirs,) = (await r.json())["sets"]
            assert theirs["creator"] == "dr-lee" and theirs["mine"]
