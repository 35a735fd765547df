"""SIGKILL one node while it receives, by STOW-RS and by C-STORE: every object it acknowledged
is on the other node with the same bytes, nothing half-stored is visible there, and the other
node goes on serving and storing. Objects whose acknowledgement never came may or may not be
stored; those that are must be whole."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests
from cluster_checks import (
    Sent,
    acknowledged,
    client,
    copies,
    dataset_part,
    listed,
    read,
    rows_without_whole_objects,
    stored_bytes,
    study_count,
)
from cluster_nodes import Cluster, Node, cluster_fixture  # noqa: F401  (the cluster fixture)
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pynetdicom import AE

INSTANCES = 40
PER_REQUEST = 2
KILL_AFTER = 5  # answered requests (or C-STOREs) before the kill


def stow_until_killed(node: Node, web: DICOMwebClient, items: list[Sent]) -> tuple[set[str], int]:
    """STOW-RS requests of PER_REQUEST instances, four at a time, with ``node`` killed once
    KILL_AFTER of them are answered; the SOP Instance UIDs acknowledged and how many requests
    got no answer."""
    batches = [items[i : i + PER_REQUEST] for i in range(0, len(items), PER_REQUEST)]
    url = f"{web.base_url}/studies"
    stored: set[str] = set()
    answered = unanswered = 0
    with ThreadPoolExecutor(4) as pool:
        sending = [
            pool.submit(web._http_post_multipart_application_dicom, url, [i.data for i in b])
            for b in batches
        ]
        for done in as_completed(sending):
            try:
                reply = done.result()
            except requests.RequestException:
                unanswered += 1
                continue
            stored |= acknowledged(reply)
            answered += 1
            if answered == KILL_AFTER:
                node.kill()
    return stored, unanswered


def store_until_killed(node: Node, items: list[Sent]) -> tuple[set[str], int]:
    """One association sending every item by C-STORE, with ``node`` killed (from another
    thread, while the next C-STOREs go on) once KILL_AFTER have succeeded; the SOP Instance
    UIDs answered with success and how many got no answer."""
    first = read(items[0].path, stop_before_pixels=True)
    ae = AE(ae_title="CLUSTER_SCU")
    # A C-STORE in flight at the kill waits this long for its answer (the default is 30 s).
    ae.dimse_timeout = ae.network_timeout = 5
    ae.add_requested_context(first.SOPClassUID, first.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.dimse_port, ae_title="TESSERA")
    assert assoc.is_established
    stored: set[str] = set()
    killer = threading.Thread(target=node.kill)
    try:
        for item in items:
            if not assoc.is_established:
                break
            status = assoc.send_c_store(item.path)
            if status.get("Status") != 0x0000:
                continue
            stored.add(item.sop)
            if len(stored) == KILL_AFTER:
                killer.start()
    finally:
        assoc.abort()
        if killer.is_alive():
            killer.join()
    return stored, len(items) - len(stored)


async def check_survivor(
    cluster: Cluster, items: list[Sent], stored: set[str], compare
) -> set[str]:
    """What node B holds of ``items``: at least everything acknowledged, each whole; the
    study's count agrees with its listing and no index row names a missing or short object.
    Returns the SOP Instance UIDs B lists."""
    auth = cluster.bearer("reader", "admin")
    b = client(cluster.nodes["node-b"], auth)
    study = items[0].study
    found = set(await asyncio.to_thread(listed, b, study))
    assert stored <= found, "an acknowledged object is missing on the other node"
    by_sop = {i.sop: i for i in items}
    for sop in found:
        item = by_sop[sop]
        assert compare(await asyncio.to_thread(stored_bytes, b, item), item), sop
    assert await asyncio.to_thread(study_count, b, study) == len(found)
    assert await rows_without_whole_objects(cluster) == []
    return found


async def test_node_killed_during_stow_streams(cluster: Cluster, tmp_path: Path) -> None:
    a, b = cluster.nodes["node-a"], cluster.nodes["node-b"]
    auth = cluster.bearer("sender", "admin")
    items = copies(get_testdata_file("SC_rgb_rle_2frame.dcm"), INSTANCES, tmp_path / "sent")

    stored, unanswered = await asyncio.to_thread(stow_until_killed, a, client(a, auth), items)
    assert not a.alive
    assert len(stored) >= KILL_AFTER * PER_REQUEST and unanswered > 0

    found = await check_survivor(cluster, items, stored, lambda got, item: got == item.data)

    # B goes on storing: what A never stored, B takes now.
    web = client(b, auth)
    rest = [i for i in items if i.sop not in found]
    if rest:
        reply = await asyncio.to_thread(
            web._http_post_multipart_application_dicom,
            f"{web.base_url}/studies",
            [i.data for i in rest],
        )
        assert acknowledged(reply) == {i.sop for i in rest}
    assert set(await asyncio.to_thread(listed, web, items[0].study)) == {i.sop for i in items}


async def test_node_killed_during_a_c_store_association(cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.nodes["node-a"]
    cluster.allow_ae("CLUSTER_SCU", "store")
    items = copies(get_testdata_file("CT_small.dcm"), INSTANCES, tmp_path / "sent")

    stored, unanswered = await asyncio.to_thread(store_until_killed, a, items)
    assert not a.alive
    assert len(stored) >= KILL_AFTER and unanswered > 0

    scratch = tmp_path / "scratch.dcm"

    def same_data_set(got: bytes, item: Sent) -> bool:
        return dataset_part(got, scratch) == dataset_part(item.data, scratch)

    await check_survivor(cluster, items, stored, same_data_set)

    # A restarted node serves what it stored before it was killed.
    a.start()
    auth = cluster.bearer("after-restart", "admin")
    found_on_a = set(await asyncio.to_thread(listed, client(a, auth), items[0].study))
    assert stored <= found_on_a
