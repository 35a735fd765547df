"""Analyses that cannot produce a result: a failing or lying model, an unknown model or image,
an image that is not a slide, a malformed request. Each answers why, stores nothing, and leaves
the study readable. The faulty models are real models of the Model protocol whose fault is
their own code, so the hub's handling of them runs as for any model."""

from __future__ import annotations

import aiohttp
import numpy as np
from pydicom.sr.codedict import codes
from test_ai_analysis import analyse, body, stored_slide

from hub.ai.model import Result
from hub.ai.routes import ANALYSER_KEY


class Raising:
    name, version, family = "raising", "1", codes.cid7162.HistogramAnalysis
    manufacturer, parameters = "Tests", {}

    def analyse(self, slide):
        raise RuntimeError("weights are corrupt")


class Lying:
    """Answers whatever it is given, however wrong."""

    name, version, family = "lying", "1", codes.cid7162.HistogramAnalysis
    manufacturer, parameters = "Tests", {}

    def __init__(self, result):
        self.result = result

    def analyse(self, slide):
        return self.result


async def instance_uids(hub_server, study: str) -> set[str]:
    return {r.sop_instance_uid for r in await hub_server.archive.instances(study)}


async def test_a_failing_or_lying_model_stores_nothing(hub_server, slide_files):
    level0 = await stored_slide(hub_server, slide_files)
    models = hub_server.app[ANALYSER_KEY].models
    models["raising"] = Raising()
    before = await instance_uids(hub_server, level0.StudyInstanceUID)
    answer = await analyse(hub_server, level0, "raising", status=502)
    assert "weights are corrupt" in answer["detail"]
    garbage = {
        "outside": Result(points=np.array([[1e7, 5.0]])),
        "negative": Result(measurements={"tissue_area_mm2": -1.0}),
        "not a number": Result(measurements={"tissue_area_mm2": float("nan")}),
        "unknown measure": Result(measurements={"weight_kg": 1.0}),
        "nothing": Result(),
        "not a result": {"area": 1},
    }
    for what, result in garbage.items():
        models["lying"] = Lying(result)
        answer = await analyse(hub_server, level0, "lying", status=502)
        assert answer["detail"], what
    assert await instance_uids(hub_server, level0.StudyInstanceUID) == before
    # The study is still served as before.
    url = f"{hub_server.url}/dicomweb/studies/{level0.StudyInstanceUID}/instances"
    async with hub_server.session() as session, session.get(url) as resp:
        assert resp.status == 200
        assert len(await resp.json()) == len(before)


async def test_unknown_model_image_and_bad_requests(hub_server, slide_files):
    level0 = await stored_slide(hub_server, slide_files)
    answer = await analyse(hub_server, level0, "no-such-model", status=404)
    assert "tessera-tissue" in answer["detail"]  # says which models there are
    url = f"{hub_server.url}/api/ai/analyses"
    async with hub_server.session() as session:
        missing = {**body(level0, "tessera-tissue"), "image": "1.2.3.4"}
        async with session.post(url, json=missing) as resp:
            assert resp.status == 404
        for bad in ({"model": "tessera-tissue"}, {**missing, "image": "not a uid"}, [1]):
            async with session.post(url, json=bad) as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["detail"]
    # A stored result is an image of the study, but not a slide to analyse.
    done = await analyse(hub_server, level0, "tessera-tissue")
    (report,) = await hub_server.archive.instances(
        level0.StudyInstanceUID, sop_uid=done["report_uid"]
    )
    not_slide = {
        **body(level0, "tessera-tissue"),
        "series": report.series_uid,
        "image": done["report_uid"],
    }
    async with hub_server.session() as session, session.post(url, json=not_slide) as resp:
        assert resp.status == 400
        assert "Whole Slide" in (await resp.json())["detail"]


async def test_provenance_of_what_is_not_a_report(hub_server, slide_files):
    level0 = await stored_slide(hub_server, slide_files)
    async with aiohttp.ClientSession(headers=hub_server.admin_headers) as session:
        for sop in (level0.SOPInstanceUID, "1.2.3.4"):
            async with session.get(f"{hub_server.url}/api/ai/provenance/{sop}") as resp:
                assert resp.status == 404
                assert (await resp.json())["detail"]
