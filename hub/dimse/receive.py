"""C-STORE data sets written into a spool of the store, and hashed, while they arrive.

pynetdicom keeps a received data set in memory (a growing BytesIO) until the C-STORE is
complete; the handler then has to write and hash it, which for a 233 MB slide level took
0.3-0.6 s after the last byte while the sender waited. pynetdicom's chunked mode
(``STORE_RECV_CHUNKED_DATASET``) writes each fragment to a temp file as it comes, but it is a
process-wide switch (other pynetdicom users in the process would get files instead of
bytes) and writes to the system temp dir. pynetdicom has no per-association form of it, so
``install`` gives its ``dimse_messages`` module a config whose flag is on only in the DUL
threads of associations armed here, and a ``NamedTemporaryFile`` that, in those threads,
writes into a spool of the store (for a local store, storing it is then a rename; an
encrypting store seals what it is given). The spool holds the Part-10 preamble, pynetdicom's file meta for the request
(the same bytes as ``encode_file_meta(event.file_meta)``) and the data set as received.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import uuid
from types import ModuleType
from typing import Any

import pynetdicom._config
import pynetdicom.dimse_messages
from pynetdicom.events import Event

from hub.archive.blobs import BlobStore, Spool

RECEIVER = "_tessera_receiver"


class _SpoolFile:
    """What pynetdicom writes a data set into: a spool, under a name pynetdicom can pass
    around (it never names a file: pynetdicom's removal of it afterwards finds nothing)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.file = self  # pynetdicom flushes ``.file`` after each fragment
        self.name = f"/dev/null/tessera-spool-{uuid.uuid4().hex}"

    def write(self, data: bytes) -> int:
        self.spool.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Receiver:
    """One association's data sets in progress, by name."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.files: dict[str, _SpoolFile] = {}

    def open(self) -> _SpoolFile:
        received = _SpoolFile(self.store.spool())
        self.files[received.name] = received
        return received

    def discard_unclaimed(self) -> None:
        """Spools of data sets no handler took: an aborted transfer, a refused object."""
        for received in list(self.files.values()):
            with contextlib.suppress(OSError):
                received.spool.discard()
        self.files.clear()


class _Config(ModuleType):
    """pynetdicom's ``_config``, with chunked receiving on in armed DUL threads."""

    def __init__(self) -> None:
        super().__init__(pynetdicom._config.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(pynetdicom._config, name)

    @property
    def STORE_RECV_CHUNKED_DATASET(self) -> bool:  # noqa: N802 (pynetdicom's name)
        if getattr(threading.current_thread(), RECEIVER, None) is not None:
            return True
        return pynetdicom._config.STORE_RECV_CHUNKED_DATASET


def _named_temporary_file(*args: Any, **kwargs: Any) -> Any:
    receiver = getattr(threading.current_thread(), RECEIVER, None)
    if receiver is None:
        return tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 (pynetdicom closes it)
    return receiver.open()


def install() -> bool:
    """Patch pynetdicom's message decoder (idempotent); False if its internals differ from
    what this module expects (then data sets are received in memory, as by default)."""
    module = pynetdicom.dimse_messages
    if isinstance(module._config, _Config):
        return True
    if not hasattr(module, "NamedTemporaryFile") or module._config is not pynetdicom._config:
        return False
    module._config = _Config()
    module.NamedTemporaryFile = _named_temporary_file
    return True


class StreamedReceive:
    """EVT_CONN_OPEN / EVT_CONN_CLOSE handlers receiving data sets into spools of ``store``."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.enabled = install()

    def arm(self, event: Event) -> None:
        if self.enabled:
            setattr(event.assoc.dul, RECEIVER, Receiver(self.store))

    def disarm(self, event: Event) -> None:
        receiver = getattr(event.assoc.dul, RECEIVER, None)
        if receiver is not None:
            receiver.discard_unclaimed()


def take(event: Event) -> Spool | None:
    """The C-STORE's received spool, now the caller's; None if the data set was received in
    memory."""
    receiver = getattr(event.assoc.dul, RECEIVER, None)
    if receiver is None:
        return None
    try:
        path = event.dataset_path
    except AttributeError:
        return None
    received = receiver.files.pop(str(path), None)
    return received.spool if received is not None else None
