"""REST API for the DIMSE peers, the C-MOVE destinations (administrators, ``admin.peers``).

GET    /api/admin/peers             the peers, each with its version
PUT    /api/admin/peers/{ae}        add a peer or change its host, port or TLS
DELETE /api/admin/peers/{ae}        remove a peer
POST   /api/admin/peers/{ae}/echo   C-ECHO the peer now

A change that gives ``version`` is refused with 409 when the peer has changed since (0: it must
not exist yet). Each change is audited with the peer before and after, and the next C-MOVE of
every process and node sends by it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from hub.apispec import described
from hub.app_keys import ARCHIVE_KEY, SETTINGS_KEY
from hub.audited import audit_change
from hub.configstore.api import answer_edit, editor, version_param
from hub.dimse import peers
from hub.dimse.peers import PeerError, PeerSource
from hub.dimse.service import DIMSE_KEY
from hub.errors import problem
from hub.requestdata import json_model

FilePath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class PeerTls(msgspec.Struct, forbid_unknown_fields=True):
    """TLS towards the peer, with files on the hub given by absolute path: the CA the peer's
    certificate is checked against (the system's CAs when absent), the hub's own certificate
    and key for a peer that asks for one, and whether to check the peer at all."""

    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    verify: bool = True


class PeerBody(msgspec.Struct, forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(min_length=1, max_length=peers.HOST_LIMIT)]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    version: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # true: TLS checked against the system's CAs; false: plain DICOM; left out: as it was
    tls: PeerTls | bool | UnsetType = UNSET


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/admin/peers", list_peers, name="admin.peers.list")
    r.add_put("/api/admin/peers/{ae}", save_peer, name="admin.peers.save")
    r.add_delete("/api/admin/peers/{ae}", remove_peer, name="admin.peers.remove")
    r.add_post("/api/admin/peers/{ae}/echo", echo_peer, name="admin.peers.echo")


EDIT_ANSWERS = {
    400: "the AE title, host, port or TLS files are not valid",
    409: "the peer changed since the version given",
}


@described("The DIMSE peers C-MOVE may send to, each with its version and last change")
async def list_peers(request: web.Request) -> web.Response:
    return web.json_response(await peers.listed(_source(request)))


@described(
    "Add a DIMSE peer (a C-MOVE destination) or change its host, port or TLS; the AE title "
    "is 1 to 16 characters without backslash or control characters",
    body=PeerBody,
    answers=EDIT_ANSWERS,
)
async def save_peer(request: web.Request) -> web.Response:
    body = await json_model(request, PeerBody)
    try:
        tls = body.tls
        if tls is not UNSET:
            tls = await asyncio.to_thread(peers.checked_tls, msgspec.to_builtins(tls))
        edit = peers.put_peer(_ae(request), body.host, body.port, body.version, tls)
    except PeerError as exc:
        return problem(400, str(exc))
    return await _edit(request, "admin.peer.save", edit)


@described(
    "Remove a DIMSE peer; a C-MOVE to it is answered Move Destination Unknown from then on",
    query={"version": "refuse unless the peer is still at this version"},
    answers={**EDIT_ANSWERS, 404: "no such peer"},
)
async def remove_peer(request: web.Request) -> web.Response:
    return await _edit(
        request, "admin.peer.remove", peers.delete_peer(_ae(request), version_param(request))
    )


@described(
    "C-ECHO a peer now, as a C-MOVE reaches it; 200 with ok false and the reason when it did "
    "not answer Success",
    answers={404: "no such peer"},
)
async def echo_peer(request: web.Request) -> web.Response:
    ae = _ae(request)
    where = (await _source(request).current()).get(ae)
    if where is None:
        return problem(404, f"no DIMSE peer {ae!r}")
    settings = request.app[SETTINGS_KEY]
    started = time.monotonic()
    ok, detail = await peers.echo(ae, where, settings.ae_title, settings.dimse.timeout)
    seconds = round(time.monotonic() - started, 3)
    await audit_change(
        request,
        request.app[ARCHIVE_KEY].engine,
        "admin.peer.echo",
        detail={"name": ae, "host": where.host, "port": where.port, "ok": ok, "detail": detail},
    )
    return web.json_response({"ae": ae, "ok": ok, "detail": detail, "seconds": seconds})


async def _edit(request: web.Request, action: str, edit: peers.Edit) -> web.Response:
    return await answer_edit(
        request,
        request.app[ARCHIVE_KEY].engine,
        action,
        _source(request).edit(editor(request), edit),
        invalid=ValueError,  # PeerError, or a stored peer that no longer parses
    )


def _source(request: web.Request) -> PeerSource:
    return request.app[DIMSE_KEY].peers


def _ae(request: web.Request) -> str:
    return request.match_info["ae"]
