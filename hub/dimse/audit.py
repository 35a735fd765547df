"""Audit records for DIMSE reads: every C-FIND, worklist query, C-MOVE and C-GET is an access
to patient data. Stores are recorded by the archive's own audit subscriber."""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom.events import Event

from hub.dimse.bridge import LoopBridge
from hub.security.accounts import Principal
from hub.security.audit_trail import audit

log = logging.getLogger(__name__)


def record(
    archive: Any,
    bridge: LoopBridge,
    event: Event,
    who: Principal,
    action: str,
    studies: list[str],
    detail: dict,
) -> None:
    """Write one record from a pynetdicom thread; a hub without the audit trail skips it."""
    requestor = event.assoc.requestor
    try:
        bridge.call(
            audit(
                archive.engine,
                who=who.user,
                role=who.role,
                action=action,
                outcome="success",
                study=",".join(studies)[:64] or None,
                source=f"{requestor.address}:{requestor.port}",
                detail={**detail, "calling_ae": str(requestor.ae_title).strip()},
            )
        )
    except RuntimeError:
        log.debug("no audit trail attached")
