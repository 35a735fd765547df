"""C-STORE SCP: received bytes go, unchanged, through the archive's one ingest path."""

from __future__ import annotations

import logging

from pydicom import Dataset
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.events import Event

from hub.archive import IngestError, Source
from hub.archive import errors as codes
from hub.archive.blobs import Spool
from hub.archive.ingest import Expected
from hub.archive.model import IngestResult
from hub.dimse.access import AccessPolicy, NotAuthorized
from hub.dimse.bridge import ArchiveUnavailable, LoopBridge
from hub.dimse.receive import take
from hub.dimse.status import SUCCESS, status
from hub.security.accounts import Principal, actor_of
from hub.security.visibility import scope_of

log = logging.getLogger(__name__)

MIN_INGEST_RATE = 20e6  # bytes/s below which a C-STORE is answered "out of resources"


def source_of(event: Event, who: Principal) -> Source:
    """The sender, recorded with what it stores: the principal the AE acts as is the actor,
    so that a clinic's AE and the clinic's web account own the same objects."""
    requestor = event.assoc.requestor
    return Source(
        door="dimse",
        actor=actor_of(who),
        address=f"{requestor.address}:{requestor.port}",
        calling_ae=requestor.ae_title.strip(),
        scope=scope_of(who),
    )


def result_status(result: IngestResult) -> Dataset:
    """PS3.7 status for an ingest result; duplicates of the same bytes count as stored."""
    if result.ok and result.warnings:
        return status(codes.WARNING_DOES_NOT_MATCH_SOP_CLASS, "; ".join(result.warnings))
    if result.ok:
        return status(SUCCESS)
    reason = result.reason or codes.PROCESSING_FAILURE
    return status(reason, result.message or "refused")


class StoreHandler:
    """EVT_C_STORE, run in the association's thread.

    The received bytes (pynetdicom's file meta for the request + the data set exactly as it
    came over the wire) are in a spool of the store already, hashed as they arrived (see
    ``receive``); else (data set received in memory) they are written into one here. Then
    ``archive.ingest_spool``: the same ingest path as ``ingest_bytes`` without copying a
    large data set twice or a second pass over it.
    """

    def __init__(self, archive, bridge: LoopBridge, policy: AccessPolicy) -> None:
        self.archive = archive
        self.bridge = bridge
        self.policy = policy

    def __call__(self, event: Event) -> Dataset:
        streamed = take(event)
        try:
            return self._store(event, streamed)
        finally:
            if streamed is not None:
                streamed.discard()  # a refused object's; nothing once the store took it

    def _store(self, event: Event, streamed: Spool | None) -> Dataset:
        try:
            who = self.policy.authorize(event, "store")
        except NotAuthorized as exc:
            return exc.status
        request = event.request
        if request.AffectedSOPClassUID != event.context.abstract_syntax:
            return status(
                codes.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "Affected SOP Class differs from the presentation context",
            )
        try:
            spool = streamed or self._write_part10(event)
            size = spool.finish()[1]
        except OSError as exc:
            log.warning("C-STORE could not be written: %s", exc)
            return status(codes.OUT_OF_RESOURCES, f"storage error: {exc.strerror or exc}")
        except Exception as exc:  # a malformed command set or file meta
            return status(codes.CANNOT_UNDERSTAND, f"cannot read the data set: {exc}")
        expect = Expected(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID))
        try:
            result = self.bridge.call(
                self.archive.ingest_spool(spool, source=source_of(event, who), expect=expect),
                # Parsing and indexing a multi-gigabyte slide level takes a while.
                timeout=self.bridge.timeout + size / MIN_INGEST_RATE,
            )
        except Exception as exc:
            spool.discard()  # ingest_spool owns it once started; harmless if gone
            return _failure(exc)
        if not result.ok:
            log.info("C-STORE refused %s: %s", result.sop_instance_uid, result.message)
        return result_status(result)

    def _write_part10(self, event: Event) -> Spool:
        meta = b"\x00" * 128 + b"DICM" + encode_file_meta(event.file_meta)
        spool = self.archive.store.spool()
        try:
            spool.write(meta)
            with event.request.DataSet.getbuffer() as body:
                spool.write(body)
        except BaseException:
            spool.discard()
            raise
        return spool


def _failure(exc: Exception) -> Dataset:
    if isinstance(exc, IngestError):
        return status(exc.reason, exc.message)
    if isinstance(exc, ArchiveUnavailable | MemoryError):
        return status(codes.OUT_OF_RESOURCES, str(exc))
    if isinstance(exc, OSError):
        log.warning("C-STORE could not be stored: %s", exc)
        return status(codes.OUT_OF_RESOURCES, f"storage error: {exc.strerror or exc}")
    log.exception("C-STORE ingest failed", exc_info=exc)
    return status(codes.PROCESSING_FAILURE, f"processing failure: {type(exc).__name__}")
