"""Per-service access for calling AE titles, from the security package's allow-list.

Off unless ``Settings.extra["dimse_acl"]`` is true; then every C-STORE, C-FIND, C-MOVE,
C-GET and worklist query is checked with ``hub.security.ae_permitted`` (deny by default) and
refused with 0x0124 "Refused: Not Authorized". The association-level list
(``dimse_allowed_aes``) is checked first, by pynetdicom.
"""

from __future__ import annotations

from pydicom import Dataset
from pynetdicom.events import Event

from hub.dimse.bridge import LoopBridge
from hub.dimse.status import NOT_AUTHORIZED, status


class AccessPolicy:
    def __init__(self, archive, bridge: LoopBridge, enabled: bool) -> None:
        self.archive = archive
        self.bridge = bridge
        self.enabled = enabled

    def refusal(self, event: Event, service: str) -> Dataset | None:
        """None if the calling AE may use `service`, else the status to answer with."""
        if not self.enabled:
            return None
        from hub.security import ae_permitted  # only needed when the ACL is on

        calling = event.assoc.requestor.ae_title.strip()
        if self.bridge.call(ae_permitted(self.archive.engine, calling, service)):
            return None
        return status(NOT_AUTHORIZED, f"calling AE {calling} may not use {service}")
