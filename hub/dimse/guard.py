"""A DIMSE message that pynetdicom cannot decode aborts its association.

pynetdicom decodes each P-DATA in the association's network thread and does not catch what goes
wrong there: a command set without a Command Field, for one, raises AttributeError and ends that
thread. The peer is never told, and the association holds its slot until the network timeout.
Wrapped, such a message gets an A-ABORT (service provider, invalid PDU parameter value) and the
connection is closed.
"""

from __future__ import annotations

import logging

from pynetdicom.events import Event

from hub.dimse.admission import shut_down

log = logging.getLogger(__name__)

# A-ABORT PDU (PS3.8 9.3.8): source 2 = service provider, reason 6 = invalid PDU parameter value.
A_ABORT = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6])


def guard_decoding(event: Event) -> None:
    """EVT_CONN_OPEN: wrap the new association's message decoding."""
    assoc = event.assoc
    receive = assoc.dimse.receive_primitive

    def receive_primitive(primitive) -> None:
        try:
            receive(primitive)
        except Exception as exc:  # whatever a peer's bytes make pynetdicom's decoder raise
            peer = getattr(assoc.requestor, "address", "?")
            log.warning("DIMSE: undecodable message from %s (%s); aborted", peer, exc)
            shut_down(assoc, A_ABORT)

    assoc.dimse.receive_primitive = receive_primitive
