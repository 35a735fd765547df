"""STOW-RS refuses bad input with the PS3.18 status and reason, and stores nothing of it."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from dicomweb_support import BOUNDARY, STOW_TYPE, multipart_body
from pydicom.data import get_testdata_file

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"


async def post(hub, body: bytes, content_type: str = STOW_TYPE) -> tuple[int, dict]:
    async with (
        hub.session() as session,
        session.post(
            hub.url + "/dicomweb/studies", data=body, headers={"Content-Type": content_type}
        ) as r,
    ):
        data = await r.json(content_type=None) if r.content_length != 0 else {}
        return r.status, data


def reasons(reply: dict) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in reply[FAILED_SOP_SEQUENCE]["Value"]]


async def assert_nothing_stored(hub) -> None:
    async with hub.session() as session, session.get(hub.url + "/dicomweb/instances") as r:
        assert r.status == 200
        assert await r.json() == []
    assert [info async for info in hub.archive.store.iterate()] == []
    assert list(hub.settings.tmp_dir.iterdir()) == []


async def test_every_bad_corpus_file_is_refused(corpus: Path, hub_server) -> None:
    for path in sorted((corpus / "bad").iterdir()):
        status, reply = await post(
            hub_server, multipart_body([("application/dicom", path.read_bytes())])
        )
        assert status == 409, path.name
        (reason,) = reasons(reply)
        assert reason in (0xC000, 0xA900), path.name
    await assert_nothing_stored(hub_server)


GOOD = Path(get_testdata_file("CT_small.dcm")).read_bytes()


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status"),
    [
        ("empty body", b"", STOW_TYPE, 400),
        (
            "truncated multipart",
            multipart_body([("application/dicom", GOOD)])[:3000],
            STOW_TYPE,
            400,
        ),
        (
            "wrong boundary",
            multipart_body([("application/dicom", GOOD)], boundary="other"),
            STOW_TYPE,
            400,
        ),
        (
            "no boundary",
            multipart_body([("application/dicom", GOOD)]),
            'multipart/related; type="application/dicom"',
            400,
        ),
        ("wrong content type", GOOD, "application/dicom", 415),
        ("json body", b"{}", "application/json", 415),
        (
            "metadata-and-bulk STOW",
            multipart_body([("application/dicom+json", b"[]")]),
            f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
            415,
        ),
        ("non-DICOM part", multipart_body([("text/plain", b"hello")]), STOW_TYPE, 409),
        (
            "garbage labelled DICOM",
            multipart_body([("application/dicom", b"x" * 500)]),
            STOW_TYPE,
            409,
        ),
        ("zero-byte part", multipart_body([("application/dicom", b"")]), STOW_TYPE, 409),
        ("truncated Part-10", multipart_body([("application/dicom", GOOD[:5000])]), STOW_TYPE, 409),
    ],
)
async def test_broken_bodies(
    hub_server, name: str, body: bytes, content_type: str, status: int
) -> None:
    got, reply = await post(hub_server, body, content_type)
    assert got == status, name
    assert reasons(reply), name
    await assert_nothing_stored(hub_server)


async def test_missing_uids_refused(hub_server) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.SOPInstanceUID
    from dicomweb_support import dicom_bytes

    got, reply = await post(hub_server, multipart_body([("application/dicom", dicom_bytes(ds))]))
    assert got == 409
    assert reasons(reply) == [0xC000]
    await assert_nothing_stored(hub_server)


async def test_oversize_body(settings, tmp_path) -> None:
    from hubtest import running_hub

    settings.max_upload_bytes = 10_000
    async with running_hub(settings) as hub:
        got, reply = await post(hub, multipart_body([("application/dicom", GOOD)]))
        assert got == 413
        assert reasons(reply)
        await assert_nothing_stored(hub)


async def test_some_stored_is_202(hub_server) -> None:
    body = multipart_body([("application/dicom", GOOD), ("text/plain", b"not dicom")])
    got, reply = await post(hub_server, body)
    assert got == 202
    assert len(reply[REFERENCED_SOP_SEQUENCE]["Value"]) == 1
    assert reasons(reply) == [0xC000]


async def test_study_route_refuses_other_study(hub_server) -> None:
    body = multipart_body([("application/dicom", GOOD)])
    async with (
        hub_server.session() as session,
        session.post(
            hub_server.url + "/dicomweb/studies/1.2.3.4",
            data=body,
            headers={"Content-Type": STOW_TYPE},
        ) as r,
    ):
        assert r.status == 409
        assert reasons(await r.json()) == [0xA900]
    await assert_nothing_stored(hub_server)
