"""What the REST routes that edit a configuration scope share: who edits, the ``version`` of a
removal, and the answer to an edit (its problems, its audit record)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.audited import audit_change
from hub.configstore.cached import Change
from hub.configstore.entries import VersionConflict
from hub.errors import problem
from hub.requestdata import parse_int

Refusals = type[Exception] | tuple[type[Exception], ...]


def editor(request: web.Request) -> str:
    return request["principal"].user if request.get("principal") else "api"


def version_param(request: web.Request) -> int | None:
    raw = request.query.get("version")
    return None if raw is None else parse_int(raw, "version", maximum=2**31 - 1)


async def answer_edit(
    request: web.Request,
    engine: AsyncEngine,
    action: str,
    edit: Awaitable[Change],
    *,
    invalid: Refusals,
    conflicts: Refusals = (),
    done: Callable[[], None] | None = None,
) -> web.Response:
    """Run the edit and answer it: 404 for an entry that is not there, 409 for a version
    conflict (``conflict``: "version") or one of ``conflicts`` (an entry others still use:
    "in_use"), 400 for an ``invalid`` entry; a change is audited with
    the entry before and after, then ``done`` runs."""
    conflicts = conflicts if isinstance(conflicts, tuple) else (conflicts,)
    try:
        change = await edit
    except KeyError as exc:
        return problem(404, f"no such entry {exc.args[0]!r}")
    except VersionConflict as exc:
        return problem(409, str(exc), conflict="version")
    except conflicts as exc:
        return problem(409, str(exc), conflict="in_use")
    except invalid as exc:
        return problem(400, str(exc))
    if done is not None:
        done()
    await audit_change(request, engine, action, detail=change.audit_detail())
    new = change.new
    return web.json_response(
        {"name": change.name, "version": new.version if new else None, "removed": new is None}
    )
