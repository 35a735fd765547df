"""Two nodes on one index and one bucket: what one node stores, the other finds and serves with
the same bytes, and objects of one study sent to both nodes at once all end up in that study."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cluster_checks import (
    acknowledged,
    client,
    copies,
    expected_frames,
    frames,
    listed,
    read,
    rows_without_whole_objects,
    sent,
    stored_bytes,
    study_count,
)
from cluster_nodes import Cluster, cluster_fixture  # noqa: F401  (the cluster fixture)
from pydicom.data import get_testdata_file

PYDICOM_FILES = ("CT_small.dcm", "MR_small_RLE.dcm", "color3d_jpeg_baseline.dcm")
CORPUS_FILES = ("dicom-wsi/sm_image.dcm", "us/US-RGB-8-epicard.dcm")


def files(corpus: Path) -> list[Path]:
    return [Path(get_testdata_file(name)) for name in PYDICOM_FILES] + [
        corpus / name for name in CORPUS_FILES
    ]


async def test_stored_on_one_node_served_by_the_other(cluster: Cluster, corpus: Path) -> None:
    auth = cluster.bearer("sender", "admin")
    a, b = client(cluster.nodes["node-a"], auth), client(cluster.nodes["node-b"], auth)
    items = [sent(path) for path in files(corpus)]

    reply = await asyncio.to_thread(a._http_post_multipart_application_dicom,
                                    f"{a.base_url}/studies", [i.data for i in items])  # fmt: skip
    assert acknowledged(reply) == {i.sop for i in items}

    for item in items:
        found = await asyncio.to_thread(listed, b, item.study)
        assert set(found) == {item.sop}
        assert await asyncio.to_thread(stored_bytes, b, item) == item.data
        count = int(read(item.path, stop_before_pixels=True).get("NumberOfFrames") or 1)
        expected = expected_frames(item.path)
        # B reads from the bucket; A (whose cache the ingest filled) serves the same frames;
        # B again, now from its own cache.
        for web in (b, a, b):
            assert await asyncio.to_thread(frames, web, item, count) == expected
    assert await rows_without_whole_objects(cluster) == []
    # Both nodes appended to one audit chain, under the one key they share.
    assert "audit trail intact" in await asyncio.to_thread(cluster.tessera, "audit", "verify")


async def test_studies_sent_to_both_nodes_at_once(cluster: Cluster, tmp_path: Path) -> None:
    """Four new studies of one new patient, their instances spread over both nodes and sent
    several at a time: whichever node commits first makes the patient, study and series rows,
    and the other node's objects join them; every count comes out right."""
    auth = cluster.bearer("sender", "admin")
    nodes = [client(cluster.nodes[name], auth) for name in ("node-a", "node-b")]
    source = get_testdata_file("CT_small.dcm")
    studies = [copies(source, 8, tmp_path / f"study{n}", patient_id="CLUSTER-1") for n in range(4)]
    items = [item for row in zip(*studies, strict=True) for item in row]  # interleaved

    def send(number: int) -> set[str]:
        web = nodes[number % 2]
        reply = web._http_post_multipart_application_dicom(
            f"{web.base_url}/studies", [items[number].data]
        )
        return acknowledged(reply)

    with ThreadPoolExecutor(8) as pool:
        replies = await asyncio.to_thread(lambda: list(pool.map(send, range(len(items)))))
    assert set().union(*replies) == {i.sop for i in items}

    for study in studies:
        uid = study[0].study
        for web in nodes:
            assert set(await asyncio.to_thread(listed, web, uid)) == {i.sop for i in study}
            assert await asyncio.to_thread(study_count, web, uid) == len(study)
    patients = await asyncio.to_thread(
        nodes[0].search_for_studies, search_filters={"PatientID": "CLUSTER-1"}
    )
    assert len(patients) == len(studies)


async def test_one_instance_sent_to_both_nodes_at_once(cluster: Cluster, tmp_path: Path) -> None:
    """The same object to both nodes, many times over at once: one instance, stored once."""
    auth = cluster.bearer("sender", "admin")
    nodes = [client(cluster.nodes[name], auth) for name in ("node-a", "node-b")]
    (item,) = copies(get_testdata_file("MR_small.dcm"), 1, tmp_path / "one")

    def send(number: int) -> set[str]:
        web = nodes[number % 2]
        reply = web._http_post_multipart_application_dicom(f"{web.base_url}/studies", [item.data])
        return acknowledged(reply)

    with ThreadPoolExecutor(8) as pool:
        replies = await asyncio.to_thread(lambda: list(pool.map(send, range(16))))
    assert all(r == {item.sop} for r in replies)  # stored, or an identical duplicate
    for web in nodes:
        assert set(await asyncio.to_thread(listed, web, item.study)) == {item.sop}
        assert await asyncio.to_thread(study_count, web, item.study) == 1
        assert await asyncio.to_thread(stored_bytes, web, item) == item.data
