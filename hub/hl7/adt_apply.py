"""Applying the patient changes of one ADT message: all of them in one transaction, or none."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audited import audit_peer_change
from hub.hl7.ack import APPLICATION_ERROR, not_applied
from hub.hl7.adt import PatientChange
from hub.hl7.apply import Sender
from hub.patients.changes import Applied, Origin, merge_patients, update_patient
from hub.patients.model import PatientError


async def apply_patients(engine: AsyncEngine, changes: list[PatientChange], sender: Sender) -> str:
    """Apply every change or none (a Nak); audit each. The ACK's note: what changed nothing."""
    origin = Origin(f"hl7:{sender.application}"[:128], sender.address, sender.control_id)
    try:
        try:
            applied, notes = await _apply_all(engine, changes, origin)
        except IntegrityError:
            # An object made the same patient between our look-up and our insert: now the
            # look-up finds it.
            applied, notes = await _apply_all(engine, changes, origin)
    except PatientError as exc:
        raise not_applied(APPLICATION_ERROR, str(exc)) from None
    for change in applied:
        await audit_peer_change(
            engine,
            who=origin.who,
            role="hl7",
            source=sender.address,
            action=f"patient.{change.kind}",
            patient=change.patient.patient_id,
            detail={
                "change": change.id,
                "prior": change.prior.patient_id if change.prior else None,
                "studies": change.studies,
                "steps": change.steps,
                "message": sender.control_id,
            },
        )
    return "; ".join(notes)


async def _apply_all(
    engine: AsyncEngine, changes: list[PatientChange], origin: Origin
) -> tuple[list[Applied], list[str]]:
    applied: list[Applied] = []
    notes: list[str] = []
    async with engine.begin() as conn:  # an error raised inside rolls every change back
        for change in changes:
            if change.prior is None:
                done = await update_patient(conn, change.patient, change.given, origin)
            else:
                done = await merge_patients(
                    conn, change.patient, change.prior, change.given, origin
                )
            if isinstance(done, str):
                notes.append(done)
            else:
                applied.append(done)
    return applied, notes
