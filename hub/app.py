"""THE composition root: settings -> ports -> doors -> one aiohttp Application.

Both kinds of process are built here. The primary runs every door; a reader process
(``hub.serve.readers``) runs the read-only subset and relays everything else to the primary.
Every process that ingests (the server, import, convert, demo) opens its ports with
``open_archive``, which installs the ingest hooks (``install_ingest_hooks``).

The doors are imported inside the functions that use them: ``tessera import`` opens the ports
without loading the HTTP doors, and ``tessera --help`` loads none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from aiohttp import web

    from hub.archive import Archive
    from hub.archive.migrations.runner import SchemaMode
    from hub.config import Settings
    from hub.serve.leases import LeaderLease, LeaseKeeper
    from hub.serve.proxy import Upstream

Role = Literal["primary", "reader"]
Door = Callable[["web.Application"], None]


async def open_archive(
    settings: Settings, *, schema: SchemaMode = "create", clear_temp: bool = False
) -> Archive:
    """The ports of every process that ingests (the server, import, convert, demo): the blob
    store and the index (the archive), with the ingest hooks. The audit sink and the work
    queues live in the index; their doors attach to ``archive.engine``."""
    from hub.archive import Archive
    from hub.stores import open_store

    archive = await Archive.open(
        settings, store=open_store(settings), clear_temp=clear_temp, schema=schema
    )
    install_ingest_hooks(archive, settings)
    return archive


def install_ingest_hooks(archive: Archive, settings: Settings) -> None:
    """The in-transaction hooks of the one ingest path, installed here for every entry point
    so that none goes without one: forwarding queues its sends, the dose registry records the
    dose reports. Each installs once per archive; the doors of the server reuse them."""
    from hub.dose.service import install as install_dose
    from hub.forward.service import install as install_forwarding

    install_forwarding(archive, settings)
    install_dose(archive, settings)


def doors(role: Role) -> list[Door]:
    """Each door adds its routes and background work, in this order. Security comes first so
    that its gate is the outermost middleware. A reader serves DICOMweb reads, pages and static
    files itself; it keeps no first admin and no housekeeping (the primary does those once)."""
    from functools import partial

    import web.routes as web_routes
    from hub import dicomweb, security

    if role == "reader":
        return [partial(security.setup, primary=False), dicomweb.setup, web_routes.setup]

    import telehealth.routes as telehealth_routes
    from hub import ai, annotations, jobs
    from hub.apispec import routes as apispec_routes
    from hub.backup import api as backup_api
    from hub.conformance import routes as conformance_routes
    from hub.dimse import service as dimse_service
    from hub.dose import service as dose_service
    from hub.forward import service as forward_service
    from hub.hl7 import service as hl7_service
    from hub.patients import api as patients_api
    from hub.system import api as system_api
    from hub.worklist import api as worklist_api

    return [
        security.setup,
        dicomweb.setup,
        worklist_api.setup,
        forward_service.setup,
        dimse_service.setup,
        hl7_service.setup,
        patients_api.setup,
        jobs.setup,
        telehealth_routes.setup,
        annotations.setup,
        ai.setup,
        dose_service.setup,
        apispec_routes.setup,
        backup_api.setup,
        system_api.setup,
        conformance_routes.setup,
        web_routes.setup,
    ]


async def build_app(
    settings: Settings,
    archive: Archive | None = None,
    *,
    relayed: bool = False,
    upstream: Upstream | None = None,
) -> web.Application:
    """The hub as one Application; the archive is opened here (and closed with the app) unless
    one is given.

    ``relayed``: reader processes relay requests to this primary, which then takes the client's
    address and scheme from them. ``upstream``: build a reader instead, which relays what it does
    not serve itself to the primary behind ``upstream``; its index must be at the current
    schema (the primary upgrades it).
    """
    from aiohttp import web

    from hub import errors, recent_errors
    from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
    from hub.archive import Archive
    from hub.forwarded import forwarded_middleware
    from hub.serve import bodyrate, connlimits, registry
    from hub.serve.proxy import proxy_middleware, trust_local_proxy
    from hub.serve.readers import served_here
    from hub.stores import open_store

    recent_errors.install()  # what this process logs at ERROR, for GET /api/admin/system
    role: Role = "reader" if upstream is not None else "primary"
    owned = archive is None
    if archive is None:
        schema = "require" if role == "reader" else "create"
        archive = await Archive.open(settings, store=open_store(settings), schema=schema)
    if role == "primary":  # a reader ingests nothing: it relays writes to the primary
        install_ingest_hooks(archive, settings)
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS_KEY] = settings
    app[ARCHIVE_KEY] = archive
    errors.install(app)
    connlimits.install(app, settings)
    if role == "primary":
        bodyrate.install(app, settings)
    if settings.trusted_proxies:
        app.middlewares.append(forwarded_middleware(settings.trusted_proxies))
    if upstream is not None:
        app.middlewares.append(proxy_middleware(upstream, served_here))
    if relayed:
        app.middlewares.append(trust_local_proxy)
    if role == "primary":  # a node's readers are part of it: one row, one id
        registry.setup(app)
    for setup in doors(role):
        setup(app)
    if owned:
        app.on_cleanup.append(close_archive)
    return app


async def close_archive(app: web.Application) -> None:
    from hub.app_keys import ARCHIVE_KEY

    await app[ARCHIVE_KEY].close()


def janitor_lease(settings: Settings, archive: Archive, holder: str | None = None) -> LeaderLease:
    """The lease of the janitor duty (orphan blobs, the bucket sweep) in the shared index, for
    this node (or ``holder``: a one-off command beside a serving node of the same id)."""
    from hub.serve.janitor_duty import LEASE
    from hub.serve.leases import LeaderLease
    from hub.serve.nodes import node_id

    return LeaderLease(
        archive.engine, LEASE, holder or node_id(settings), settings.cluster.lease_seconds
    )


async def start_duties(settings: Settings, archive: Archive) -> list[LeaseKeeper]:
    """The single-holder duties of a serving node, each run while this node holds its lease:
    the janitor and, with a schedule, backups. A node that holds the janitor's lease at start (a
    lone node always does) scans a local store before it serves; a bucket is swept beside
    serving."""
    from hub.serve.janitor_duty import JanitorDuty
    from hub.serve.leases import LeaseKeeper

    cluster = settings.cluster
    lease = janitor_lease(settings, archive)
    duty = JanitorDuty(archive, lease, cluster.orphan_grace_seconds, cluster.sweep_seconds)
    keeper = LeaseKeeper(lease, cluster.heartbeat_seconds, duty.run)
    if await keeper.start():
        await keeper.until(duty.scanned)
    keepers = [keeper]
    if settings.backup.scheduled:
        keepers.append(await _start_backups(settings, archive))
    return keepers


async def _start_backups(settings: Settings, archive: Archive) -> LeaseKeeper:
    from hub.backup.duty import BackupDuty
    from hub.backup.status import LEASE
    from hub.serve.leases import LeaderLease, LeaseKeeper
    from hub.serve.nodes import node_id

    node, cluster = node_id(settings), settings.cluster
    lease = LeaderLease(archive.engine, LEASE, node, cluster.lease_seconds)
    duty = BackupDuty(settings, archive.engine, node)
    keeper = LeaseKeeper(lease, cluster.heartbeat_seconds, duty.run)
    await keeper.start()
    return keeper
