"""With the store on S3 and S3 down or refusing the credentials, DICOMweb answers 503 with
Retry-After: reads with a problem document, STOW with the failure reason of each instance.
Never a 500, and nothing half-stored. SeaweedFS is really stopped, or really given a wrong
secret."""

from __future__ import annotations

from pathlib import Path

import pydicom
from dicomweb_support import STOW_TYPE, multipart_body
from hubtest import free_port, running_hub
from pydicom.data import get_testdata_file
from s3_server import SeaweedS3, store_fields

from hub.config import Settings
from hub.errors import ERRORS_KEY, PROBLEM_JSON

FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
OUT_OF_RESOURCES = 0xA700
CT = Path(get_testdata_file("CT_small.dcm"))


def on_s3(tmp_path: Path, server: SeaweedS3, **changes: object) -> Settings:
    # No cache: every read goes to S3 (a filled cache would serve it without S3).
    fields = store_fields(server, cache_bytes=0, **changes)
    return Settings(data_dir=tmp_path / "data", port=free_port(), **fields)


def other_ct() -> bytes:
    ds = pydicom.dcmread(CT)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    from io import BytesIO

    out = BytesIO()
    ds.save_as(out)
    return out.getvalue()


async def stow(hub, data: bytes) -> tuple[int, dict, str | None]:
    body = multipart_body([("application/dicom", data)])
    async with (
        hub.session() as session,
        session.post(
            hub.url + "/dicomweb/studies", data=body, headers={"Content-Type": STOW_TYPE}
        ) as r,
    ):
        return r.status, await r.json(content_type=None), r.headers.get("Retry-After")


def assert_refused_for_now(status: int, reply: dict, retry_after: str | None) -> None:
    assert status == 503
    assert retry_after is not None and int(retry_after) >= 1
    (failed,) = reply[FAILED_SOP_SEQUENCE]["Value"]
    assert failed[FAILURE_REASON]["Value"] == [OUT_OF_RESOURCES]
    assert "object store is unavailable" in failed["00000902"]["Value"][0]


async def assert_not_indexed(hub, sop_uid: str) -> None:
    url = hub.url + f"/dicomweb/instances?SOPInstanceUID={sop_uid}"
    async with hub.session() as session, session.get(url) as r:
        assert r.status in (200, 204)
        assert r.status == 204 or await r.json() == []
    assert list(hub.settings.tmp_dir.glob("in-*.part")) == []


async def test_reads_and_stow_while_s3_is_down(tmp_path: Path, own_seaweedfs: SeaweedS3) -> None:
    ds = pydicom.dcmread(CT, stop_before_pixels=True)
    base = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    instance = f"{base}/instances/{ds.SOPInstanceUID}"
    reads = [instance, f"{instance}/frames/1", f"{instance}/rendered"]
    async with running_hub(on_s3(tmp_path, own_seaweedfs)) as hub:
        status, _, _ = await stow(hub, CT.read_bytes())
        assert status == 200
        async with hub.session() as session:
            for url in reads:
                async with session.get(hub.url + url) as r:
                    assert r.status == 200, url
                    await r.read()
        own_seaweedfs.stop()
        async with hub.session() as session:
            for url in reads:
                async with session.get(hub.url + url) as r:
                    assert r.status == 503, url
                    assert r.content_type == PROBLEM_JSON
                    assert int(r.headers["Retry-After"]) >= 1
                    problem = await r.json(content_type=None)
                    assert "Traceback" not in problem["detail"]
        new = other_ct()
        assert_refused_for_now(*await stow(hub, new))
        await assert_not_indexed(
            hub, pydicom.dcmread(pydicom.filebase.DicomBytesIO(new)).SOPInstanceUID
        )
        assert hub.app[ERRORS_KEY].total == 0


async def test_stow_with_wrong_credentials(tmp_path: Path, seaweedfs: SeaweedS3) -> None:
    settings = on_s3(tmp_path, seaweedfs, secret="not-the-secret")
    async with running_hub(settings) as hub:
        data = other_ct()
        assert_refused_for_now(*await stow(hub, data))
        sop_uid = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID
        await assert_not_indexed(hub, sop_uid)
        assert hub.app[ERRORS_KEY].total == 0
