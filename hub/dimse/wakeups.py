"""Wake pynetdicom's reactors when there is work instead of at their next 1 ms poll.

pynetdicom 3 runs two polling loops per association: the DUL reactor (socket <-> PDUs)
and the association reactor (DIMSE messages -> handlers), each sleeping 1 ms whenever it
found nothing to do. A C-STORE crosses both loops three times (request in, message to the
handler, response out), which costs ~1.5 ms on average and caps a do-nothing SCP at ~310
small objects/s on this kind of machine. pynetdicom has no setting or hook for this, so
``arm`` (an EVT_CONN_OPEN handler) gives an association's two threads a waiter, and the
``time`` module seen by pynetdicom's ``dul`` and ``association`` modules is replaced by one
whose ``sleep`` waits on that waiter when the sleeping thread has one:

- the DUL thread waits in ``select`` on its socket and a wake-up socket pair, written to
  when a primitive is queued for sending;
- the association thread waits on an event, set when a DIMSE message or an A-RELEASE /
  A-ABORT indication is queued for it.

The timeouts stay pynetdicom's own (1 ms), so idle CPU, timers and shutdown behave as
before; only the latency of real work goes. Threads without a waiter (other associations,
other users of pynetdicom in the process) sleep as usual.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import threading
import time
from types import ModuleType
from typing import Any

import pynetdicom.association
import pynetdicom.dul
from pynetdicom.events import Event

WAITER = "_tessera_waiter"


class _WakingQueue(queue.Queue):
    """A queue that calls ``wake`` after each put."""

    def __init__(self, wake) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class _EventWaiter:
    """The association thread's waiter."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.wake = self._event.set

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)
        self._event.clear()  # anything queued before this is seen by the caller's next check


class _SocketWaiter:
    """The DUL thread's waiter: incoming data or a primitive to send ends the wait."""

    def __init__(self, assoc) -> None:
        self._assoc = assoc
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # already woken (buffer full), or closed
            self._writer.send(b"\0")

    def wait(self, seconds: float) -> None:
        transport = self._assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is None or sock.fileno() < 0:
            time.sleep(seconds)
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes buffered: select would not see them
        try:
            ready, _, _ = select.select([sock, self._reader], [], [], seconds)
        except (OSError, ValueError):
            return  # closed meanwhile: the reactor finds out itself
        if self._reader in ready:
            with contextlib.suppress(OSError):  # drained (BlockingIOError), or closed
                while self._reader.recv(4096):
                    pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _Clock(ModuleType):
    """The ``time`` module, with a ``sleep`` that a waiter can end early."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        waiter = getattr(threading.current_thread(), WAITER, None)
        if waiter is None:
            time.sleep(seconds)
        else:
            waiter.wait(seconds)


def install() -> None:
    """Give pynetdicom's reactor modules the waking clock (idempotent)."""
    for module in (pynetdicom.dul, pynetdicom.association):
        if not isinstance(module.time, _Clock):
            module.time = _Clock()


def arm(event: Event) -> None:
    """EVT_CONN_OPEN: wire the new association's queues to its threads' waiters.

    Runs before either thread starts, while the queues are still empty.
    """
    assoc = event.assoc
    dul = assoc.dul
    if not all(hasattr(dul, q) for q in ("to_provider_queue", "to_user_queue", "socket")) or (
        not hasattr(assoc.dimse, "msg_queue")
    ):
        return  # not the pynetdicom this was written for: leave its polling as it is
    install()
    dul_waiter, assoc_waiter = _SocketWaiter(assoc), _EventWaiter()
    dul.to_provider_queue = _WakingQueue(dul_waiter.wake)
    dul.to_user_queue = _WakingQueue(assoc_waiter.wake)
    assoc.dimse.msg_queue = _WakingQueue(assoc_waiter.wake)
    setattr(dul, WAITER, dul_waiter)
    setattr(assoc, WAITER, assoc_waiter)


def disarm(event: Event) -> None:
    """EVT_CONN_CLOSE: release the wake-up sockets."""
    dul = event.assoc.dul
    waiter = getattr(dul, WAITER, None)
    if waiter is not None:
        setattr(dul, WAITER, None)
        waiter.close()
