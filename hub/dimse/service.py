"""The DIMSE door: a pynetdicom SCP running in its own threads next to the aiohttp loop.

Services: Verification (C-ECHO), Storage (C-STORE, every storage SOP class), Query/Retrieve
(C-FIND, C-MOVE, C-GET; Patient Root and Study Root) and Modality Worklist (C-FIND).
Handlers run in pynetdicom's association threads and reach the archive through
``asyncio.run_coroutine_threadsafe``; the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.dimse.access import AccessPolicy
from hub.dimse.admission import Admission
from hub.dimse.bridge import LoopBridge
from hub.dimse.config import UNCOMPRESSED, DimseConfig, storage_sop_classes
from hub.dimse.find import FindHandler
from hub.dimse.guard import guard_decoding
from hub.dimse.peers import PeerSource, peer_source, settings_peer_source
from hub.dimse.receive import StreamedReceive
from hub.dimse.retrieve import GetHandler, MoveHandler, Selector
from hub.dimse.scu import ExactSendingAE
from hub.dimse.storage import StoreHandler
from hub.dimse.wakeups import arm, disarm
from hub.security.dimse_acl import announce

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128

QUERY_MODELS = [
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
    ModalityWorklistInformationFind,
]


def scp_ae(cfg: DimseConfig) -> ExactSendingAE:
    """The SCP's AE: what it accepts is its supported contexts (the conformance statement
    reads them from here)."""
    ae = ExactSendingAE(ae_title=cfg.ae_title)
    ae.maximum_associations = cfg.max_associations
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout
    ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs from peers that allow it
    ae.require_calling_aet = cfg.allowed_aes
    ae.add_supported_context(Verification, UNCOMPRESSED)
    for model in QUERY_MODELS:
        ae.add_supported_context(model, UNCOMPRESSED)
    for storage in storage_sop_classes():
        # scp_role: a C-GET requester acts as Storage SCP on the same association.
        ae.add_supported_context(storage, cfg.transfer_syntaxes, scu_role=True, scp_role=True)
    return ae


class _CheapCopyContext(PresentationContext):
    """A supported context pynetdicom can copy quickly.

    pynetdicom deep-copies every supported context for each new association; with ~200
    storage SOP classes times ~35 transfer syntaxes that deepcopy of immutable UID strings
    took ~130 ms per association (dominating C-ECHO and C-FIND latency). Sharing the UIDs and
    copying the list is the same as far as negotiation goes, which only reads them.
    """

    def __deepcopy__(self, memo: dict) -> PresentationContext:
        clone = copy.copy(self)
        clone._transfer_syntax = list(self._transfer_syntax)
        return clone


class DimseServer:
    """Start and stop the SCP; ``port`` is the bound port (useful with dimse_port=0)."""

    def __init__(
        self,
        archive,
        config: DimseConfig,
        loop: asyncio.AbstractEventLoop,
        peers: PeerSource | None = None,
    ) -> None:
        self.archive = archive
        self.config = config
        # C-MOVE destinations: the index's peers, filled from the settings on the first start.
        self.peers = peers or peer_source(archive.engine, config.move_destinations)
        bridge = LoopBridge(loop, config.timeout)
        policy = AccessPolicy(archive, bridge)
        selector = Selector(archive, bridge, policy)
        self.store_handler = StoreHandler(archive, bridge, policy)
        receive = StreamedReceive(archive.store)
        self.admission = Admission(config.setup_timeout, config.max_associations)
        self.handlers = [
            (evt.EVT_CONN_OPEN, arm),
            (evt.EVT_CONN_CLOSE, disarm),
            (evt.EVT_CONN_OPEN, receive.arm),
            (evt.EVT_CONN_CLOSE, receive.disarm),
            # After arm(), which gives the association new queues that admission may use.
            (evt.EVT_CONN_OPEN, self.admission.opened),
            (evt.EVT_CONN_OPEN, guard_decoding),
            (evt.EVT_REQUESTED, self.admission.settled),
            (evt.EVT_CONN_CLOSE, self.admission.settled),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self.store_handler),
            (evt.EVT_C_FIND, FindHandler(archive, bridge, config.ae_title, policy)),
            (evt.EVT_C_MOVE, MoveHandler(selector, self.peers)),
            (evt.EVT_C_GET, GetHandler(selector)),
        ]
        self.ae = scp_ae(config)
        self._server: ThreadedAssociationServer | None = None

    def _tls_context(self):
        if not self.config.tls:
            return None
        from hub.security.tls import dicom_tls_context

        tls = self.config.tls
        return dicom_tls_context(tls["cert"], tls["key"], tls.get("ca"))

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    def associations(self) -> tuple[int, int]:
        """(established associations, connections yet to ask for one), at this moment.

        pynetdicom's server lists its acceptor threads; one whose association was released or
        aborted may still be winding down, so only those still established are counted."""
        if self._server is None:
            return 0, 0
        established = sum(a.is_established for a in self._server.active_associations)
        return established, self.admission.waiting()

    def start(self) -> None:
        contexts = self.ae.supported_contexts
        for cx in contexts:
            cx.__class__ = _CheapCopyContext  # same fields, cheaper copy (see the class)
        self._server = self.ae.start_server(
            (self.config.host, self.config.port),
            block=False,
            evt_handlers=self.handlers,
            contexts=contexts,
            ssl_context=self._tls_context(),
        )
        # Accepted sockets inherit this on Linux. Without it Nagle's algorithm and the peer's
        # delayed ACK add ~40 ms to every small DIMSE message (each C-STORE, each C-FIND match).
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # socketserver listens with a backlog of 5: a burst of connections beyond that had
        # their SYNs dropped and retried a second later.
        self._server.socket.listen(LISTEN_BACKLOG)
        log.info(
            "DIMSE SCP %s listening on %s:%d", self.config.ae_title, self.config.host, self.port
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


class DimseService:
    """What the app holds: the peers C-MOVE sends to (edited through /api/admin/peers), and
    the running server, once started (None if DIMSE is off)."""

    def __init__(self, peers: PeerSource) -> None:
        self.peers = peers
        self.server: DimseServer | None = None


DIMSE_KEY: web.AppKey[DimseService] = web.AppKey("dimse", DimseService)


async def _serve(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    peers = app[DIMSE_KEY].peers
    await peers.current()  # the first start fills the index's peers from the settings
    if settings.dimse_port is None:
        yield
        return
    config = DimseConfig.from_settings(settings)
    await announce(app[ARCHIVE_KEY].engine)
    # Building ~200 x 35 presentation contexts and binding take a moment: not on the loop.
    server = await asyncio.to_thread(
        DimseServer, app[ARCHIVE_KEY], config, asyncio.get_running_loop(), peers
    )
    await asyncio.to_thread(server.start)
    app[DIMSE_KEY].server = server
    try:
        yield
    finally:
        # shutdown() joins the association threads; they may be waiting on this loop.
        await asyncio.to_thread(server.stop)
        app[DIMSE_KEY].server = None


def setup(app: web.Application) -> None:
    """Run the SCP for the app's lifetime when ``Settings.dimse_port`` is set; serve the peers'
    administration (/api/admin/peers) either way."""
    from hub.dimse import peers_api

    app[DIMSE_KEY] = DimseService(settings_peer_source(app[ARCHIVE_KEY].engine, app[SETTINGS_KEY]))
    peers_api.add_routes(app)
    app.cleanup_ctx.append(_serve)
