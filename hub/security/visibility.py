"""Row-level read limits beyond the route check: the read scope of a principal.

Clinics read what they stored themselves; specialists read ultrasound; the other roles read
everything (``policy.READ_SCOPE``). The archive applies the scope (``hub.archive.ReadScope``)
in every read, query and ingest call; this module only builds it, for the doors that have a
principal (``scope_of``, ``request_scope``) and for the ingest, which has an actor name
(``writer_scopes``). ``worklist_restriction`` does the same for the worklist (REST and
Modality Worklist).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive import ReadScope, Source
from hub.security.accounts import Principal, actor_of
from hub.security.policy import READ_SCOPE
from hub.security.tables import users


def scope_for_role(role: str | None, actor: str) -> ReadScope:
    rule = READ_SCOPE.get(role or "", "none")
    if rule == "all":
        return ReadScope.ALL
    if rule == "own":
        return ReadScope.own(actor)
    if rule.startswith("modality:"):
        return ReadScope.modality(rule.split(":", 1)[1])
    return ReadScope.NOTHING


def scope_of(who: Principal | None) -> ReadScope:
    """What this principal may read; nobody reads nothing."""
    if who is None:
        return ReadScope.NOTHING
    return scope_for_role(who.role, actor_of(who))


def request_scope(request: web.Request) -> ReadScope:
    """The caller's scope, as the access gate identified the caller: nothing without it."""
    return scope_of(request.get("principal"))


def read_restriction(who: Principal | None) -> ColumnElement[bool] | None:
    """The principal's scope as a condition over the instances/series join (None: all)."""
    return scope_of(who).condition()


def worklist_restriction(who: Principal) -> ColumnElement[bool] | None:
    """The worklist items ``who`` may see, as a condition over ``worklist_items``; None: all.

    A clinic sees the items assigned to it (``clinic``, set by whoever schedules the step)
    and the items it created; a specialist the ultrasound steps; the others everything.
    """
    from hub.worklist.model import worklist_items  # the table lives with its feature

    scope = READ_SCOPE.get(who.role, "none")
    if scope == "all":
        return None
    items = worklist_items.c
    if scope == "own":
        me = actor_of(who)
        return or_(items.clinic == me, items.created_by == me)
    if scope.startswith("modality:"):
        return items.modality == scope.split(":", 1)[1]
    return false()


def writer_scopes(engine: AsyncEngine) -> Callable[[Source], Awaitable[ReadScope]]:
    """The ingest's resolver for sources that name an actor but carry no scope (conversion
    jobs, telehealth captures): the actor's account decides. An actor with no account reads
    its own objects; a source with no actor is one of the hub's own doors."""

    async def resolve(source: Source) -> ReadScope:
        if source.actor is None:
            return ReadScope.ALL
        async with engine.connect() as conn:
            role = await conn.scalar(select(users.c.role).where(users.c.username == source.actor))
        if role is None:
            return ReadScope.own(source.actor)
        return scope_for_role(role, source.actor)

    return resolve
