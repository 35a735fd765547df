"""Audit records for DIMSE reads: every C-FIND, worklist query, C-MOVE and C-GET is an access
to patient data. Stores are recorded by the archive's own audit subscriber."""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom.events import Event

from hub.dimse.bridge import LoopBridge

log = logging.getLogger(__name__)


def record(
    archive: Any, bridge: LoopBridge, event: Event, action: str, studies: list[str], detail: dict
) -> None:
    """Write one record from a pynetdicom thread; a hub without the audit trail skips it."""
    from hub.security.audit_trail import audit

    requestor = event.assoc.requestor
    try:
        bridge.call(
            audit(
                archive.engine,
                who=str(requestor.ae_title).strip() or "-",
                role="dicom-ae",
                action=action,
                outcome="success",
                study=",".join(studies)[:64] or None,
                source=f"{requestor.address}:{requestor.port}",
                detail=detail,
            )
        )
    except RuntimeError:
        log.debug("no audit trail attached")
