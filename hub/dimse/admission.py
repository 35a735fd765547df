"""Connections that have not asked for an association yet: a deadline, and a share per peer.

pynetdicom counts a connection against ``maximum_associations`` from the moment it is accepted,
and reads each PDU with the network timeout (60 s). A peer that connects and sends nothing, or
only part of a PDU header, so holds an association slot for a minute, and can do it again: twenty
such connections had every modality refused with "local limit exceeded". Here a connection must
deliver its A-ASSOCIATE-RQ within ``setup_timeout`` or it is closed, and connections from one
address that have not done so yet may take at most half of the slots.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from pynetdicom.association import Association
from pynetdicom.events import Event

log = logging.getLogger(__name__)


class Admission:
    """EVT_CONN_OPEN / EVT_REQUESTED / EVT_CONN_CLOSE handlers of the SCP."""

    def __init__(self, setup_timeout: float, max_associations: int) -> None:
        self.setup_timeout = setup_timeout
        self.per_peer = max(1, max_associations // 2)
        self._lock = threading.Lock()
        self._waiting: dict[Association, tuple[str, threading.Timer]] = {}

    def opened(self, event: Event) -> None:
        peer = str(event.address[0])
        timer = threading.Timer(self.setup_timeout, self._expired, (event.assoc, peer))
        timer.daemon = True
        with self._lock:
            crowded = sum(p == peer for p, _ in self._waiting.values()) >= self.per_peer
            if not crowded:
                self._waiting[event.assoc] = (peer, timer)
        if crowded:
            log.warning("DIMSE: %s already holds %d idle connections; closed", peer, self.per_peer)
            _close(event.assoc)
        else:
            timer.start()

    def settled(self, event: Event) -> None:
        """The association request arrived, or the connection closed."""
        with self._lock:
            entry = self._waiting.pop(event.assoc, None)
        if entry is not None:
            entry[1].cancel()

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def _expired(self, assoc: Association, peer: str) -> None:
        with self._lock:
            if self._waiting.pop(assoc, None) is None:
                return
        log.warning(
            "DIMSE: %s sent no association request within %.0f s; closed", peer, self.setup_timeout
        )
        _close(assoc)


def _close(assoc: Association) -> None:
    """End a connection that has not asked for an association, and free its slot.

    Shutting the socket down ends the network thread's read ("connection closed"; closing the
    descriptor instead could free it for reuse mid-read). The association's own thread, though,
    waits for the request primitive for the whole ACSE timeout, still counted as active, and a
    closed connection gives it nothing; ``None`` is what it gets when that wait times out, and
    it then ends as it would then.
    """
    shut_down(assoc)
    assoc.dul.to_user_queue.put(None)


def shut_down(assoc: Association, last_words: bytes = b"") -> None:
    """Send ``last_words`` (an A-ABORT, say) if any, then shut the association's socket down."""
    transport = getattr(assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        if last_words:
            sock.sendall(last_words)
        sock.shutdown(socket.SHUT_RDWR)
