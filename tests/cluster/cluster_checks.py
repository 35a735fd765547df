"""What the nodes of a cluster hold: objects made for a test, what a node serves of them, and
whether every index row names a whole object in the bucket.

The DICOMweb calls are blocking (dicomweb-client): run them in a thread from async tests.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from cluster_nodes import Cluster, Node
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid
from s3_server import bucket_settings

from hub.archive.blobs.protocol import BlobMissing
from hub.archive.blobs.s3 import S3BlobStore

ACCEPT_ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'
RAW_FRAMES = (("application/octet-stream", "*"),)


@dataclass(frozen=True)
class Sent:
    """An object a test sends: its file and identity."""

    path: Path
    study: str
    series: str
    sop: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def sent(path: Path) -> Sent:
    ds = read(path, stop_before_pixels=True)
    return Sent(path, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def read(path: Path | str, **kwargs) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, **kwargs)


def copies(
    source: Path | str, count: int, out: Path, *, patient_id: str | None = None
) -> list[Sent]:
    """``count`` instances of one new study and series, each ``source`` under a SOP Instance
    UID of its own (a real object, re-identified); ``patient_id``: of that patient instead."""
    out.mkdir(parents=True, exist_ok=True)
    ds = read(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if patient_id is not None:
        ds.PatientID = patient_id
    made = []
    for number in range(1, count + 1):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        path = out / f"{number:04}.dcm"
        ds.save_as(path, enforce_file_format=True)
        made.append(sent(path))
    return made


def expected_frames(path: Path) -> list[bytes]:
    """The frames of a file as stored: encapsulated fragments joined, or native slices."""
    ds = read(path)
    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    size = len(ds.PixelData) // count
    return [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]


def dataset_part(data: bytes, scratch: Path) -> bytes:
    """The data set of Part-10 bytes, without preamble and file meta: what C-STORE carries."""
    from pynetdicom.dsutils import split_dataset

    scratch.write_bytes(data)
    _, offset = split_dataset(scratch)
    return data[offset:]


def client(node: Node, headers: dict[str, str]) -> DICOMwebClient:
    """A client of one node that does not retry: a request to a killed node fails at once
    (the client's default backs off for two minutes)."""
    web = DICOMwebClient(url=node.dicomweb, headers=headers)
    web.set_http_retry_params(retry=False)
    return web


def stored_bytes(web: DICOMwebClient, item: Sent) -> bytes:
    """The instance as a node returns it, undecoded (the client's HTTP and multipart decoding,
    without its re-parse into a Dataset)."""
    url = f"{web.base_url}/studies/{item.study}/series/{item.series}/instances/{item.sop}"
    reply = web._http_get(url, headers={"Accept": ACCEPT_ANY_TS})
    (raw,) = web._decode_multipart_message(reply, stream=False)
    return raw


def frames(web: DICOMwebClient, item: Sent, count: int) -> list[bytes]:
    return web.retrieve_instance_frames(
        item.study, item.series, item.sop, list(range(1, count + 1)), media_types=RAW_FRAMES
    )


def listed(web: DICOMwebClient, study: str) -> dict[str, dict]:
    """QIDO-RS: the instances of a study a node lists, by SOP Instance UID."""
    rows = web.search_for_instances(study_instance_uid=study)
    return {row["00080018"]["Value"][0]: row for row in rows}


def study_count(web: DICOMwebClient, study: str) -> int:
    """The study's Number of Study Related Instances, as QIDO-RS reports it."""
    (row,) = web.search_for_studies(
        search_filters={"StudyInstanceUID": study}, fields=["NumberOfStudyRelatedInstances"]
    )
    return int(row["00201208"]["Value"][0])


def acknowledged(reply: pydicom.Dataset) -> set[str]:
    """The SOP Instance UIDs a STOW-RS response says were stored."""
    return {str(item.ReferencedSOPInstanceUID) for item in reply.get("ReferencedSOPSequence", [])}


async def index_rows(cluster: Cluster) -> list[tuple[str, str, int]]:
    """(SOP Instance UID, sha256, size) of every current instance in the shared index."""
    import asyncpg

    conn = await asyncpg.connect(cluster.postgres.rstrip("/") + f"/{cluster.database}")
    try:
        rows = await conn.fetch("SELECT sop_uid, sha256, size FROM instances WHERE is_current")
    finally:
        await conn.close()
    return [(r["sop_uid"], r["sha256"], r["size"]) for r in rows]


def bucket(cluster: Cluster) -> S3BlobStore:
    """The shared bucket under the cluster's prefix, read directly (no node, no cache)."""
    return S3BlobStore(bucket_settings(cluster.s3, cluster.prefix), cluster.work / "direct-spool")


async def rows_without_whole_objects(cluster: Cluster) -> list[str]:
    """SOP Instance UIDs whose index row names an object the bucket lacks or holds short."""
    store = bucket(cluster)
    bad = []
    for sop, sha, size in await index_rows(cluster):
        try:
            if await store.size(sha) != size:
                bad.append(sop)
        except BlobMissing:
            bad.append(sop)
    return bad
