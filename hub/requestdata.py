"""Reading what a client sent: JSON bodies, bounded integers and typed JSON fields.

Every refusal is a ``BadInput`` (a 400 problem document that says why; for a body that breaks
its model, ``field`` names the member and ``rule`` what it broke), so a handler that reads its
input through here cannot turn a malformed request into a 500.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing

import msgspec
from aiohttp import web

from hub.errors import Problem

Model = typing.TypeVar("Model")
INT64_MAX = 2**63 - 1  # what the index's integer columns hold, on SQLite and PostgreSQL
JSON_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})  # RFC 8259 section 8.1
# How msgspec says where and what: "Expected `int` <= 3650 - at `$.days`", "Object missing
# required field `username`" (no place: the top level).
MSGSPEC_PLACE = re.compile(r"(?P<rule>.*?)(?: - at `(?P<at>[^`]*)`)?$", re.DOTALL)
MSGSPEC_MEMBER = re.compile(r"Object (?:missing required|contains unknown) field `(?P<name>[^`]*)`")


class BadInput(Problem):
    """A 400 problem document saying why (with the body member and the rule it broke, when a
    body failed its model); raised, never returned."""

    def __init__(self, reason: str, *, field: str | None = None, rule: str | None = None) -> None:
        named = {"field": field, "rule": rule}
        super().__init__(400, reason, **{k: v for k, v in named.items() if v is not None})
        self.reason_text = reason


async def json_body(request: web.Request) -> object:
    """The request body parsed as JSON (UTF-8), or BadInput saying what is wrong with it."""
    charset = (request.charset or "utf-8").lower()
    if charset not in JSON_CHARSETS:
        raise BadInput(f"JSON bodies are UTF-8; charset={charset} is not supported")
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput("the body is not UTF-8 text") from None
    except RecursionError:
        raise BadInput("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        raise BadInput(f"the body is not JSON: {exc}") from None


async def json_object(request: web.Request) -> dict:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


async def json_model(request: web.Request, model: type[Model]) -> Model:
    """The body decoded into ``model`` (a msgspec struct or a dataclass), or BadInput naming the
    field and what is wrong with it. The same model describes the body in the API document."""
    try:
        return msgspec.convert(await json_body(request), model)
    except msgspec.ValidationError as exc:
        raise BadInput(str(exc), **_where(str(exc))) from None


def _where(message: str) -> dict[str, str]:
    """``field`` (a JSON path: ``$.days``) and ``rule`` from a msgspec validation message."""
    place = MSGSPEC_PLACE.match(message)
    assert place is not None  # the pattern matches any text
    rule, at = place["rule"], place["at"] or "$"
    if member := MSGSPEC_MEMBER.fullmatch(rule):
        at += f".{member['name']}"
    return {"field": at, "rule": rule}


def parse_int(text: str | None, name: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """A decimal integer from a query parameter or path segment, within [minimum, maximum]."""
    value = (text or "").strip()
    digits = value[1:] if value[:1] in "+-" else value
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        raise BadInput(f"{name} must be an integer from {minimum} to {maximum}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise BadInput(f"{name} must be an integer from {minimum} to {maximum}")
    return number


def json_int(value: object, name: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """An integer from a JSON document (a whole float such as 1e3 counts; true does not)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise BadInput(f"{name} must be an integer from {minimum} to {maximum}")
    return value


# JSON types that each annotation of a dataclass field accepts.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "None": (type(None),),
}


def check_field_types(body: dict, cls: type) -> None:
    """BadInput when a member of ``body`` has a JSON type that ``cls``'s field does not take.

    Reads the annotations of a dataclass (``str``, ``float | None``, ``list[...]``...), so the
    model stays the one place that says what a field is.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in body:
            continue
        accepted = _accepted(hints[f.name])
        value = body[f.name]
        if accepted and not _is_instance(value, accepted):
            names = " or ".join(sorted({_json_name(t) for t in accepted}))
            rule = f"must be {names}"
            raise BadInput(f"{f.name} {rule}", field=f"$.{f.name}", rule=rule)


def _accepted(hint: object) -> tuple[type, ...]:
    """The JSON types a field annotation takes; () for annotations this does not know."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for member in typing.get_args(hint) for t in _accepted(member))
    origin = typing.get_origin(hint) or hint
    name = "None" if origin is type(None) else getattr(origin, "__name__", "")
    return _JSON_TYPES.get(name, ())


def _is_instance(value: object, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in accepted:
        return False
    return isinstance(value, accepted)


def _json_name(kind: type) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }[kind]
