"""Sending stored objects by C-STORE, unchanged.

pynetdicom does not transcode. We propose, for each SOP class, the transfer syntax the object
is stored in (its own presentation context), and for uncompressed objects a second context
with the uncompressed syntaxes as a deliberate fallback (pynetdicom re-encodes between those).
A compressed object the peer will not take in its own syntax fails with a clear "no
presentation context" message instead of being silently decoded.

When the peer accepts the stored syntax the file is streamed as it is on disk (pynetdicom's
``STORE_SEND_CHUNKED_DATASET``), so the receiver gets the very bytes that were archived.
These functions block: call them from a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pynetdicom import AE, _config, build_context
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import PresentationContext

from hub.dimse.config import UNCOMPRESSED

# Paths given to send_c_store are sent as stored (no decode, no re-encode).
_config.STORE_SEND_CHUNKED_DATASET = True

MAX_CONTEXTS = 128  # PS3.8 limit per association (odd context ids 1..255)


FileOpener = Callable[[], AbstractContextManager[Path]]


class StoredInstance(Dataset):
    """Stands for a stored Part-10 file where pynetdicom expects a Dataset.

    pynetdicom's C-GET/C-MOVE SCPs only pass Datasets on to ``send_c_store``; this one
    carries how to get a file of the stored bytes (a path, or a blob materialized for the
    duration of the send) so ``install_exact_sender`` can send those bytes instead.
    """

    def __init__(
        self, source: Path | FileOpener, sop_class_uid: str, sop_instance_uid: str, ts: str
    ) -> None:
        super().__init__()
        self.SOPClassUID = sop_class_uid
        self.SOPInstanceUID = sop_instance_uid
        self.stored_file = (lambda: nullcontext(source)) if isinstance(source, Path) else source
        self.stored_syntax = UID(ts)


@dataclass
class SendResult:
    sop_instance_uid: str
    status: int | None  # DIMSE status, None if nothing was sent
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and (self.status == 0 or self.status >> 12 == 0xB)


class NoPresentationContext(ValueError):
    pass


def plan_contexts(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """Contexts for (SOP class, stored transfer syntax) pairs: exact first, then fallbacks."""
    exact: dict[tuple[str, str], None] = {}
    fallback: dict[str, None] = {}
    for sop_class, ts in pairs:
        exact[(sop_class, ts)] = None
        if ts in UNCOMPRESSED:
            fallback[sop_class] = None
    contexts = [build_context(sc, [ts]) for sc, ts in exact]
    contexts += [build_context(sc, UNCOMPRESSED) for sc in fallback]
    if len(contexts) > MAX_CONTEXTS:
        raise NoPresentationContext(
            f"{len(contexts)} presentation contexts needed, at most {MAX_CONTEXTS} per association"
        )
    return contexts


def choose(assoc: Association, item: StoredInstance, path: Path) -> Path | Dataset:
    """The stored file (at ``path``) if the peer accepted its syntax; else a decoded Dataset
    to re-encode."""
    accepted = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == item.SOPClassUID]
    if any(cx.transfer_syntax[0] == item.stored_syntax for cx in accepted):
        if item.stored_syntax == DeflatedExplicitVRLittleEndian and _odd_length(path):
            # The deflated stream must be padded to an even length (PS3.5 A.5); peers such as
            # dcmtk refuse odd PDV fragments, so such a file is re-deflated by pynetdicom.
            return dcmread(path)
        return path
    if item.stored_syntax in UNCOMPRESSED and any(
        cx.transfer_syntax[0] in UNCOMPRESSED for cx in accepted
    ):
        return dcmread(path)
    offered = sorted({UID(cx.transfer_syntax[0]).name for cx in accepted}) or ["nothing"]
    raise NoPresentationContext(
        f"no presentation context: peer does not accept {UID(item.SOPClassUID).name} in "
        f"{item.stored_syntax.name} (accepted for this SOP class: {', '.join(offered)}); "
        "objects are not transcoded"
    )


def _odd_length(path: Path) -> bool:
    _, offset = split_dataset(path)
    return (path.stat().st_size - offset) % 2 == 1


def install_exact_sender(assoc: Association) -> None:
    """Make ``assoc.send_c_store`` send StoredInstance objects as their stored bytes."""
    if getattr(assoc, "_sends_stored_bytes", False):
        return
    original = assoc.send_c_store

    def send_c_store(dataset, *args, **kwargs):
        if not isinstance(dataset, StoredInstance):
            return original(dataset, *args, **kwargs)
        with dataset.stored_file() as path:
            return original(choose(assoc, dataset, path), *args, **kwargs)

    assoc.send_c_store = send_c_store  # type: ignore[method-assign]
    assoc._sends_stored_bytes = True  # type: ignore[attr-defined]


class ExactSendingAE(AE):
    """An AE whose outgoing associations (ours and pynetdicom's C-MOVE ones) send stored bytes."""

    def associate(self, *args, **kwargs) -> Association:
        assoc = super().associate(*args, **kwargs)
        install_exact_sender(assoc)
        if assoc.is_established and assoc.dul.socket and assoc.dul.socket.socket:
            # Small DIMSE messages go out at once instead of waiting for the peer's ACK.
            assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return assoc


def read_instance(path: Path) -> StoredInstance:
    meta = read_file_meta_info(path)
    return StoredInstance(
        path,
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
        meta.TransferSyntaxUID,
    )


def send_instances(
    items: list[StoredInstance],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "TESSERA",
    timeout: float = 60.0,
) -> list[SendResult]:
    """C-STORE every item over one association; one result per item, in order."""
    if not items:
        return []
    ae = ExactSendingAE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    try:
        contexts = plan_contexts((i.SOPClassUID, i.stored_syntax) for i in items)
    except NoPresentationContext as exc:
        return [SendResult(i.SOPInstanceUID, None, str(exc)) for i in items]
    assoc = ae.associate(host, port, contexts=contexts, ae_title=called_ae)
    if not assoc.is_established:
        why = "association rejected" if assoc.is_rejected else "association failed"
        return [
            SendResult(i.SOPInstanceUID, None, f"{why} by {called_ae}@{host}:{port}") for i in items
        ]
    results = []
    try:
        for item in items:
            results.append(_send_one(assoc, item))
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    results += [
        SendResult(i.SOPInstanceUID, None, "association lost") for i in items[len(results) :]
    ]
    return results


def _send_one(assoc: Association, item: StoredInstance) -> SendResult:
    try:
        rsp = assoc.send_c_store(item)
    except (NoPresentationContext, ValueError) as exc:
        return SendResult(item.SOPInstanceUID, None, str(exc))
    if "Status" not in rsp:
        return SendResult(item.SOPInstanceUID, None, "no response (timeout or abort)")
    return SendResult(item.SOPInstanceUID, int(rsp.Status), str(rsp.get("ErrorComment", "")))


def send_files(
    paths: Iterable[Path], host: str, port: int, called_ae: str, **kwargs
) -> list[SendResult]:
    """C-STORE Part-10 files (for example blobs materialized by the store)."""
    return send_instances([read_instance(Path(p)) for p in paths], host, port, called_ae, **kwargs)
