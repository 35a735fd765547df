"""Applying the orders of one message to the worklist: all of them in one transaction, or none.

A step is found by its StudyInstanceUID: the order's own (IPC-3, ZDS-1) or, without one, a UID
made from the placer (else filler) order number, so that a re-sent NW finds the step it made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.audited import audit_peer_change
from hub.hl7.ack import APPLICATION_ERROR, DATA_TYPE_ERROR, UNKNOWN_KEY, not_applied
from hub.hl7.orders import CANCEL, NEW, Order
from hub.worklist import model
from hub.worklist.model import WorklistError, WorklistItem
from hub.worklist.states import CANCELLED, SCHEDULED, STARTED, TRANSITIONS

# What an update (XO, SC) may change, as NewItem field -> columns. Patient fields are not among
# them: IHE RAD-13 takes patient changes from ADT, not from the order.
UPDATABLE = {
    "accession": ("accession",),
    "requested_procedure_id": ("requested_procedure_id",),
    "requested_procedure_description": ("requested_procedure_description",),
    "requested_procedure_codes": ("requested_procedure_codes",),
    "sps_id": ("sps_id",),
    "sps_description": ("sps_description",),
    "protocol_codes": ("protocol_codes",),
    "station_ae": ("station_ae",),
    "modality": ("modality",),
    "start": ("start_date", "start_time"),
    "referring_physician": ("referring_physician",),
}


@dataclass(frozen=True)
class Sender:
    """Who sent the message, for the audit trail."""

    application: str  # MSH-3^MSH-4
    address: str  # host:port of the connection
    control_id: str  # MSH-10


@dataclass(frozen=True)
class Change:
    action: str  # worklist.create, worklist.update, worklist.cancel
    order: Order
    item: WorklistItem


async def apply(engine: AsyncEngine, orders: list[Order], sender: Sender) -> str:
    """Apply every order or none (a Nak); audit what changed. The ACK's note: which orders
    changed nothing (a re-sent NW, a repeated cancel)."""
    try:
        changes, notes = await _apply_all(engine, orders)
    except IntegrityError:
        # Another connection made the same step between our look-up and our insert: now the
        # look-up finds it.
        changes, notes = await _apply_all(engine, orders)
    for change in changes:
        await audit_peer_change(
            engine,
            who=f"hl7:{sender.application}"[:128],
            role="hl7",
            source=sender.address,
            action=change.action,
            patient=change.item.patient_id,
            study=change.item.study_uid,
            detail={"order": change.order.key, "message": sender.control_id, "id": change.item.id},
        )
    return "; ".join(notes)


async def _apply_all(engine: AsyncEngine, orders: list[Order]) -> tuple[list[Change], list[str]]:
    changes: list[Change] = []
    notes: list[str] = []
    async with engine.begin() as conn:  # a Nak raised inside rolls every order back
        for order in orders:
            change = await _apply_one(conn, order)
            if isinstance(change, str):
                notes.append(change)
            else:
                changes.append(change)
    return changes, notes


async def _apply_one(conn: AsyncConnection, order: Order) -> Change | str:
    existing = await model.item_for_study(conn, order.study_uids)
    if order.action == NEW:
        if existing is not None:
            return f"order {order.key} already scheduled"
        return await _create(conn, order)
    if existing is None:
        raise not_applied(UNKNOWN_KEY, f"no scheduled procedure step for order {order.key}")
    if order.action == CANCEL:
        if existing.status == CANCELLED:
            return f"order {order.key} already cancelled"
        allowed, status = TRANSITIONS["cancel"]
        return await _change(conn, order, existing, allowed, {"status": status}, "cancel")
    values = _updates(order, existing)
    return await _change(conn, order, existing, (SCHEDULED, STARTED), values, "update")


async def _create(conn: AsyncConnection, order: Order) -> Change:
    try:
        values = model.normalise(order.item)
    except WorklistError as exc:
        raise not_applied(DATA_TYPE_ERROR, f"order {order.key}: {exc}") from None
    values |= {"study_uid": order.study_uids[0], "created_by": None}
    await model.insert_row(conn, values)
    return Change("worklist.create", order, await _reread(conn, values["study_uid"]))


def _updates(order: Order, existing: WorklistItem) -> dict:
    """The columns the order changes, validated as a new item would be."""
    merged = dataclasses.replace(
        order.item,
        patient_name=existing.patient_name,
        patient_id=existing.patient_id,
        modality=order.item.modality or existing.modality,
        birth_date="",
        sex="",
    )
    try:
        values = model.normalise(merged)
    except WorklistError as exc:
        raise not_applied(DATA_TYPE_ERROR, f"order {order.key}: {exc}") from None
    return {
        column: values[column]
        for name in order.given & UPDATABLE.keys()
        for column in UPDATABLE[name]
    }


async def _change(
    conn: AsyncConnection,
    order: Order,
    existing: WorklistItem,
    allowed: tuple[str, ...],
    values: dict,
    what: str,
) -> Change:
    if not await model.change_row(conn, existing.id, allowed, values):
        raise not_applied(
            APPLICATION_ERROR, f"order {order.key} is {existing.status}; cannot {what} it"
        )
    return Change(f"worklist.{what}", order, await _reread(conn, existing.study_uid))


async def _reread(conn: AsyncConnection, study_uid: str) -> WorklistItem:
    item = await model.item_for_study(conn, [study_uid])
    assert item is not None
    return item
