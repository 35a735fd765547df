"""REST API that edits the forwarding targets and rules (admins, ``forward.admin``).

PUT    /api/forward/targets/{name}        create or replace a target
DELETE /api/forward/targets/{name}        remove a target no rule names
POST   /api/forward/targets/{name}/echo   C-ECHO (DIMSE) or a study search (STOW) now
PUT    /api/forward/rules/{name}          create or replace a rule
DELETE /api/forward/rules/{name}          remove a rule
POST   /api/forward/rules/dry-run         where a rule would have sent the newest objects

Every entry has a version; a change that gives ``version`` is refused with 409 when the entry
has changed since (0: it must not exist yet). The problem's ``conflict`` member tells the two
409s apart: ``version`` (reload and retry) and ``in_use`` (a rule still names the target). Each
change is audited with the old and the new entry, secrets redacted, and takes effect in every
process and node at their next routing. The entries and their versions are listed by
GET /api/forward/targets (hub.forward.api).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from aiohttp import web

from hub.apispec import described
from hub.audited import audit_change
from hub.configstore.api import answer_edit, editor, version_param
from hub.errors import problem
from hub.forward import dryrun
from hub.forward.config import ConfigError, parse_rule
from hub.forward.configsource import (
    InUse,
    delete_rule,
    delete_target,
    put_rule,
    put_target,
)
from hub.forward.echo import echo
from hub.forward.keys import FORWARDER_KEY
from hub.forward.worker import Forwarder
from hub.requestdata import json_model

Text = Annotated[str, msgspec.Meta(max_length=1024)]
Names = Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=64)]
Version = Annotated[int, msgspec.Meta(ge=0)]


class TlsSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None
    verify: bool = True


class DimseTargetBody(
    msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, tag="dimse", tag_field="type"
):
    host: Text
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    called_ae: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    calling_ae: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] | None = None
    tls: bool | TlsSettings = False
    convert_uncompressed: bool = False
    version: Version | None = None


class StowTargetBody(
    msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, tag="stow", tag_field="type"
):
    url: Text
    token: Text | None = None  # kept when a later change leaves it out
    token_env: Text | None = None
    version: Version | None = None


TargetBody = DimseTargetBody | StowTargetBody


class RuleMatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    modality: Names = []
    sop_class: Names = []
    door: Names = []
    calling_ae: Names = []


class RuleBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    targets: Annotated[Names, msgspec.Meta(min_length=1)]
    match: RuleMatch = msgspec.field(default_factory=RuleMatch)
    position: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    version: Version | None = None


class DryRunBody(msgspec.Struct, forbid_unknown_fields=True):
    targets: Annotated[Names, msgspec.Meta(min_length=1)] | None = None  # None: the saved rules
    match: RuleMatch = msgspec.field(default_factory=RuleMatch)
    last: Annotated[int, msgspec.Meta(ge=1, le=dryrun.MAX_LAST)] = 100


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/api/forward/targets/{name}", save_target, name="forward.admin.target.save")
    r.add_delete("/api/forward/targets/{name}", remove_target, name="forward.admin.target.remove")
    r.add_post("/api/forward/targets/{name}/echo", echo_target, name="forward.admin.target.echo")
    r.add_post("/api/forward/rules/dry-run", dry_run, name="forward.admin.rule.dryrun")
    r.add_put("/api/forward/rules/{name}", save_rule, name="forward.admin.rule.save")
    r.add_delete("/api/forward/rules/{name}", remove_rule, name="forward.admin.rule.remove")


EDIT_ANSWERS = {
    400: "the entry is not valid, or would leave the configuration invalid",
    409: "the entry changed since the version given, or a rule still names the target",
}


@described(
    "Create or replace a forwarding target (DIMSE C-STORE or STOW-RS)",
    body=TargetBody,
    answers=EDIT_ANSWERS,
)
async def save_target(request: web.Request) -> web.Response:
    body = await json_model(request, TargetBody)  # type: ignore[arg-type]
    spec = msgspec.to_builtins(body)
    version = spec.pop("version", None)
    return await _edit(request, "forward.target.save", put_target(_name(request), spec, version))


@described(
    "Remove a forwarding target; its queued tasks wait, visible, until it returns",
    query={"version": "refuse unless the target is still at this version"},
    answers={**EDIT_ANSWERS, 404: "no such target"},
)
async def remove_target(request: web.Request) -> web.Response:
    edit = delete_target(_name(request), version_param(request))
    return await _edit(request, "forward.target.remove", edit)


@described(
    "Create or replace a routing rule: every stored object that matches all its conditions "
    "is sent to its targets",
    body=RuleBody,
    answers=EDIT_ANSWERS,
)
async def save_rule(request: web.Request) -> web.Response:
    body = await json_model(request, RuleBody)
    spec = {"targets": body.targets, "match": msgspec.to_builtins(body.match)}
    edit = put_rule(_name(request), spec, body.version, body.position)
    return await _edit(request, "forward.rule.save", edit)


@described(
    "Remove a routing rule",
    query={"version": "refuse unless the rule is still at this version"},
    answers={**EDIT_ANSWERS, 404: "no such rule"},
)
async def remove_rule(request: web.Request) -> web.Response:
    edit = delete_rule(_name(request), version_param(request))
    return await _edit(request, "forward.rule.remove", edit)


async def _edit(request: web.Request, action: str, edit: Any) -> web.Response:
    forwarder = _forwarder(request)
    return await answer_edit(
        request,
        forwarder.archive.engine,
        action,
        forwarder.source.edit(editor(request), edit),
        invalid=ConfigError,
        conflicts=InUse,  # before ConfigError, which it is
        done=forwarder.wake,
    )


@described(
    "Test a target now as the forwarder reaches it: C-ECHO for DIMSE, a one-study search for "
    "STOW-RS. 200 with ok false when the target did not answer as it should",
    answers={404: "no such target"},
)
async def echo_target(request: web.Request) -> web.Response:
    forwarder = _forwarder(request)
    config = await forwarder.source.current()
    name = _name(request)
    target = config.targets.get(name)
    if target is None:
        return problem(404, f"no forward target {name!r}")
    started = time.monotonic()
    ok, detail = await echo(target, config.timeouts)
    seconds = round(time.monotonic() - started, 3)
    await audit_change(
        request, forwarder.archive.engine, "forward.target.echo", detail={"name": name, "ok": ok}
    )
    return web.json_response({"target": name, "ok": ok, "detail": detail, "seconds": seconds})


@described(
    "Where a rule (or, without targets, the saved rules) would have sent the newest stored "
    "objects; nothing is queued",
    body=DryRunBody,
    answers={400: "the rule is not valid"},
)
async def dry_run(request: web.Request) -> web.Response:
    body = await json_model(request, DryRunBody)
    forwarder = _forwarder(request)
    config = await forwarder.source.current()
    rules = list(config.rules)
    if body.targets is not None:
        spec = {
            "name": "dry run",
            "targets": body.targets,
            "match": msgspec.to_builtins(body.match),
        }
        try:
            rules = [parse_rule(0, spec, config.targets)]
        except ConfigError as exc:
            return problem(400, str(exc))
    found = await dryrun.recent(forwarder.archive.engine, body.last)
    return web.json_response(dryrun.summary(dryrun.route(found, rules), rules))


def _forwarder(request: web.Request) -> Forwarder:
    return request.app[FORWARDER_KEY]


def _name(request: web.Request) -> str:
    return request.match_info["name"]
