"""C-STORE SCU for forwarding: one association per batch, the stored bytes sent unchanged.

Blocking (pynetdicom): call :func:`send_batch` from an executor thread, never on the event loop.

Byte-identical delivery: pynetdicom is given the stored file's path in chunked mode, so it
streams the encoded data set that follows the file meta information as-is, and it requires
an accepted presentation context in exactly the stored transfer syntax (no conversion).
We therefore propose, per SOP class, the transfer syntax the object is stored in; only a
target configured with ``convert_uncompressed`` also gets little-endian objects re-encoded
between explicit and implicit VR, deliberately and noted on the task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from hub.forward.config import DimseTarget, Timeouts
from hub.forward.outcome import Outcome, from_dimse_status

# Re-encoding between these is lossless and pydicom does it faithfully; big endian is left
# out (pixel data would need byte swapping), compressed syntaxes are never transcoded.
CONVERTIBLE = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]

# Process-wide pynetdicom switch: a C-STORE given a *path* streams the file's data set bytes
# instead of decoding and re-encoding it. Sends given a Dataset are unaffected.
_config.STORE_SEND_CHUNKED_DATASET = True


@dataclass(frozen=True)
class _Prepared:
    path: Path
    sop_class: UID
    transfer_syntax: UID


def send_batch(target: DimseTarget, paths: Sequence[Path], timeouts: Timeouts) -> list[Outcome]:
    """Send each Part-10 file over one association; one Outcome per file, in order."""
    outcomes: list[Outcome | None] = [None] * len(paths)
    prepared: list[tuple[int, _Prepared]] = []
    for i, path in enumerate(paths):
        try:
            prepared.append((i, _prepare(path)))
        except (OSError, ValueError, AttributeError, InvalidDicomError) as exc:
            outcomes[i] = Outcome.dead(f"stored file cannot be sent: {exc}")
    if prepared:
        for i, outcome in zip(
            [i for i, _ in prepared],
            _send_prepared(target, [p for _, p in prepared], timeouts),
            strict=True,
        ):
            outcomes[i] = outcome
    return [o for o in outcomes if o is not None]


def _prepare(path: Path) -> _Prepared:
    meta, offset = split_dataset(path)
    missing = [
        kw
        for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        if kw not in meta
    ]
    if missing:
        raise ValueError(f"file meta information lacks {', '.join(missing)}")
    length = path.stat().st_size - offset
    if length % 2:
        # PDV fragments must have even length (PS3.8); receivers abort such an association.
        raise ValueError(
            f"the stored data set has an odd length ({length} bytes), which DICOM network "
            "transfer does not allow; a deflated data set must end with a pad byte (PS3.5 "
            "A.5). Sending it unchanged is impossible: fix the source object"
        )
    return _Prepared(path, UID(meta.MediaStorageSOPClassUID), UID(meta.TransferSyntaxUID))


def _send_prepared(
    target: DimseTarget, batch: list[_Prepared], timeouts: Timeouts
) -> list[Outcome]:
    ae = _ae(target, timeouts)
    # One context per (SOP class, stored syntax), plus with conversion allowed one offering
    # both little-endian syntaxes; the worker's batch limit keeps within PS3.8's 128.
    for sop_class, syntax in sorted({(p.sop_class, p.transfer_syntax) for p in batch}):
        ae.add_requested_context(sop_class, [syntax])
    if target.convert_uncompressed:
        for sop_class in sorted({p.sop_class for p in batch if p.transfer_syntax in CONVERTIBLE}):
            ae.add_requested_context(sop_class, CONVERTIBLE)

    where = _where(target)
    assoc, errors = _associate(ae, target)
    if not assoc.is_established:
        return [_not_established(assoc, where, errors, p) for p in batch]
    try:
        return _send_over(assoc, batch, where, target.convert_uncompressed)
    finally:
        if assoc.is_established:
            assoc.release()


def echo(target: DimseTarget, timeouts: Timeouts) -> tuple[bool, str]:
    """C-ECHO the target as the forwarder would reach it: (answered with Success, what
    happened)."""
    ae = _ae(target, timeouts)
    ae.add_requested_context(Verification)
    where = _where(target)
    assoc, errors = _associate(ae, target)
    if not assoc.is_established:
        if assoc.is_rejected:
            return False, f"association rejected by {where}: {'; '.join(errors)}"
        return False, f"cannot reach {where}: {'; '.join(errors) or 'association not established'}"
    try:
        status = assoc.send_c_echo()
    finally:
        if assoc.is_established:
            assoc.release()
    if not status or "Status" not in status:
        return False, f"{where} sent no C-ECHO response"
    if status.Status != 0:
        return False, f"{where} answered C-ECHO with status 0x{status.Status:04X}"
    return True, f"{where} answered C-ECHO with Success"


def _ae(target: DimseTarget, timeouts: Timeouts) -> AE:
    ae = AE(ae_title=target.calling_ae)
    ae.connection_timeout = timeouts.connect
    ae.acse_timeout = timeouts.acse
    ae.dimse_timeout = timeouts.dimse
    ae.network_timeout = timeouts.network
    return ae


def _where(target: DimseTarget) -> str:
    return f"{target.called_ae}@{target.host}:{target.port}"


def _associate(ae: AE, target: DimseTarget) -> tuple[Association, list[str]]:
    with _pynetdicom_errors(ae) as errors:
        assoc = ae.associate(
            target.host,
            target.port,
            ae_title=target.called_ae,
            tls_args=target.tls.pynetdicom_args(target.host) if target.tls else None,
        )
    return assoc, errors


def _send_over(
    assoc: Association, batch: list[_Prepared], where: str, convert: bool
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    broken = False
    for p in batch:
        if broken or not assoc.is_established:
            outcomes.append(Outcome.untried(f"association with {where} ended before this object"))
            continue
        exact = _has_context(assoc, p)
        converted_to = None if exact else _conversion(assoc, p, convert)
        if not exact and converted_to is None:
            outcomes.append(Outcome.dead(_no_context_message(assoc, where, p)))
            continue
        try:
            # A path streams the stored bytes; a Dataset is re-encoded by pynetdicom.
            status = assoc.send_c_store(dcmread(p.path) if converted_to else p.path)
        except RuntimeError:  # pynetdicom: the association ended under us
            status = Dataset()
        if "Status" not in status:
            # Timed out or aborted; pynetdicom marks the association ended a moment later,
            # so stop here rather than race it.
            broken = True
            outcomes.append(
                Outcome.retry(f"no C-STORE response from {where} (timeout or connection aborted)")
            )
            continue
        comment = str(status.get("ErrorComment", "") or "")
        outcome = from_dimse_status(int(status.Status), comment)
        if converted_to and outcome.verdict == "done":
            note = f"sent re-encoded from {p.transfer_syntax.name} to {converted_to.name}"
            outcome = Outcome.done("; ".join(filter(None, [note, outcome.message])), outcome.status)
        outcomes.append(outcome)
    if broken and assoc.is_established:
        assoc.abort()
    return outcomes


def _has_context(assoc: Association, p: _Prepared) -> bool:
    return any(
        cx.abstract_syntax == p.sop_class and cx.transfer_syntax[0] == p.transfer_syntax
        for cx in assoc.accepted_contexts
    )


def _conversion(assoc: Association, p: _Prepared, allowed: bool) -> UID | None:
    """The little-endian syntax to re-encode into, when the target allows it and accepts one."""
    if not allowed or p.transfer_syntax not in CONVERTIBLE:
        return None
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == p.sop_class and cx.transfer_syntax[0] in CONVERTIBLE:
            return UID(cx.transfer_syntax[0])
    return None


def _no_context_message(assoc: Association, where: str, p: _Prepared) -> str:
    accepted = sorted(
        {
            cx.transfer_syntax[0].name
            for cx in assoc.accepted_contexts
            if cx.abstract_syntax == p.sop_class
        }
    )
    offered_elsewhere = (
        f" It accepts this SOP class only in: {', '.join(accepted)}."
        if accepted
        else " It accepts this SOP class in no transfer syntax we proposed."
    )
    return (
        f"no presentation context: {where} did not accept {p.sop_class.name} ({p.sop_class}) "
        f"in {p.transfer_syntax.name} ({p.transfer_syntax}), the transfer syntax the object is "
        f"stored in.{offered_elsewhere} Tessera forwards the stored bytes unchanged and does not "
        "transcode; configure the receiver to accept this SOP class and transfer syntax (or, "
        "for little-endian objects, allow convert_uncompressed on the target), then retry."
    )


def _not_established(assoc: Association, where: str, errors: list[str], p: _Prepared) -> Outcome:
    if assoc.is_rejected:
        return Outcome.retry(f"association rejected by {where}: {'; '.join(errors)}")
    if assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
        # The receiver answered but accepted none of our presentation contexts.
        return Outcome.dead(_no_context_message(assoc, where, p))
    detail = "; ".join(errors) or "association not established"
    return Outcome.retry(f"cannot reach {where}: {detail}")


class _AssociationErrors(logging.Handler):
    """Collect pynetdicom's error log lines for one AE: its only account of why an association
    failed (connection refused, rejection reason, TLS failure). pynetdicom logs them from the
    association and DUL threads it starts, which both point back to the AE."""

    def __init__(self, ae: AE) -> None:
        super().__init__(logging.ERROR)
        self.ae = ae
        self.caller = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        thread = threading.current_thread()
        owner = getattr(thread, "ae", None) or getattr(getattr(thread, "assoc", None), "ae", None)
        if record.thread == self.caller or owner is self.ae:
            self.lines.append(record.getMessage())


@contextmanager
def _pynetdicom_errors(ae: AE) -> Iterator[list[str]]:
    handler = _AssociationErrors(ae)
    logger = logging.getLogger("pynetdicom")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
