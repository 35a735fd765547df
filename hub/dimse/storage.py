"""C-STORE SCP: received bytes go, unchanged, through the archive's one ingest path."""

from __future__ import annotations

import logging
from io import BytesIO

from pydicom import Dataset, dcmread
from pynetdicom.events import Event

from hub.archive import IngestError, Source
from hub.archive import errors as codes
from hub.archive.model import IngestResult
from hub.dimse.bridge import ArchiveUnavailable, LoopBridge

log = logging.getLogger(__name__)

SUCCESS = 0x0000
IDENTITY_TAGS = [0x00080016, 0x00080018]


def status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        # ErrorComment is LO: 64 characters, no backslash.
        ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds


def source_of(event: Event) -> Source:
    requestor = event.assoc.requestor
    return Source(
        door="dimse",
        address=f"{requestor.address}:{requestor.port}",
        calling_ae=requestor.ae_title.strip(),
    )


def result_status(result: IngestResult) -> Dataset:
    """PS3.7 status for an ingest result; duplicates of the same bytes count as stored."""
    if result.ok:
        return status(SUCCESS)
    reason = result.reason or codes.PROCESSING_FAILURE
    return status(reason, result.message or "refused")


def _identity_mismatch(event: Event, data: bytes) -> str:
    """Why the data set does not belong to this request ("" if it does).

    Missing UIDs are left to the archive, which refuses them as "cannot understand".
    """
    request = event.request
    if request.AffectedSOPClassUID != event.context.abstract_syntax:
        return "Affected SOP Class differs from the presentation context"
    try:
        ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=IDENTITY_TAGS)
        sop_class, sop_uid = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    except Exception:
        return ""  # unreadable: the archive's parser gives the precise reason
    if sop_class and sop_class != request.AffectedSOPClassUID:
        return f"data set SOP Class {sop_class} differs from the request"
    if sop_uid and sop_uid != request.AffectedSOPInstanceUID:
        return "data set SOP Instance UID differs from the request"
    return ""


class StoreHandler:
    def __init__(self, archive, bridge: LoopBridge) -> None:
        self.archive = archive
        self.bridge = bridge

    def __call__(self, event: Event) -> Dataset:
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # a malformed command set or file meta
            return status(codes.CANNOT_UNDERSTAND, f"cannot read the data set: {exc}")
        if mismatch := _identity_mismatch(event, data):
            return status(codes.DATASET_DOES_NOT_MATCH_SOP_CLASS, mismatch)
        try:
            result = self.bridge.call(self.archive.ingest_bytes(data, source=source_of(event)))
        except IngestError as exc:
            return status(exc.reason, exc.message)
        except (ArchiveUnavailable, MemoryError) as exc:
            return status(codes.OUT_OF_RESOURCES, str(exc))
        except OSError as exc:
            log.warning("C-STORE could not be stored: %s", exc)
            return status(codes.OUT_OF_RESOURCES, f"storage error: {exc.strerror or exc}")
        except Exception as exc:
            log.exception("C-STORE ingest failed")
            return status(codes.PROCESSING_FAILURE, f"processing failure: {type(exc).__name__}")
        if not result.ok:
            log.info("C-STORE refused %s: %s", result.sop_instance_uid, result.message)
        return result_status(result)
