"""Every error answer of the HTTP doors: an RFC 9457 problem document.

``application/problem+json`` with the members ``type`` (``about:blank``: the status says it
all), ``title`` (the status phrase), ``status`` and ``detail`` (why, in words), plus extension
members where a client can use them (``field``: the request member that failed validation).
A handler returns ``problem(...)`` or raises ``Problem(...)``; errors aiohttp raises itself
(no such route, a method not allowed, a body over the application's limit) get the same shape
in the middleware here.

The middleware is also the last line of defence: an exception no handler expected becomes a
500 problem document, with an id that names the log record holding the traceback; the client
never sees the traceback. Each one is counted per route, so a test or an operator can tell that
the hub met a bug rather than bad input.

A store that cannot be reached (``StoreUnavailable``: S3 down, refusing the credentials) is no
bug: any door reading from it answers 503 with Retry-After, and the cause is logged.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

from hub.archive.blobs import StoreUnavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem_text(status: int, detail: str, **members: object) -> str:
    """The problem document: ``members`` extend it, they never replace the four it has."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    body |= {name: value for name, value in members.items() if name not in body}
    return json.dumps(body)


def problem(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, **members: object
) -> web.Response:
    """An error answer to return."""
    text = problem_text(status, detail, **members)
    return web.Response(status=status, text=text, content_type=PROBLEM_JSON, headers=headers)


class Problem(web.HTTPError):
    """An error answer to raise: the same document as ``problem()``, of any 4xx or 5xx status."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **members: object,
    ) -> None:
        self.status_code = status  # aiohttp's HTTPError reads its status from here
        text = problem_text(status, detail, **members)
        super().__init__(headers=headers, text=text, content_type=PROBLEM_JSON)
        self.detail = detail


@dataclass
class UnexpectedErrors:
    total: int = 0
    by_route: Counter[str] = field(default_factory=Counter)

    def count(self, route: str) -> None:
        self.total += 1
        self.by_route[route] += 1


ERRORS_KEY: web.AppKey[UnexpectedErrors] = web.AppKey("unexpected_errors", UnexpectedErrors)


def install(app: web.Application) -> None:
    """Add the error middleware; call first, so that it is the outermost one."""
    app[ERRORS_KEY] = UnexpectedErrors()
    app.middlewares.append(unexpected_errors)


@web.middleware
async def unexpected_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:  # a deliberate answer
        if exc.status < 400 or exc.content_type == PROBLEM_JSON:
            raise
        return as_problem(request, exc)
    except ConnectionError:  # the client went away
        raise
    except StoreUnavailable as exc:
        if request.writer.output_size > 0:
            raise
        log.warning("%s %s: the store is unavailable: %s", request.method, request.path, exc)
        return store_unavailable(exc.retry_after)
    except Exception:
        route = request.match_info.route.name or request.path
        error_id = secrets.token_hex(6)
        log.exception(
            "unexpected error %s in %s %s (%s)", error_id, request.method, route, request.path
        )
        request.app[ERRORS_KEY].count(route)
        if request.writer.output_size > 0:  # the answer had begun: nothing clean to send
            raise
        return problem(
            500,
            f"The hub met an unexpected error; it is logged as {error_id}.",
            error_id=error_id,
        )


def as_problem(request: web.Request, exc: web.HTTPException) -> web.Response:
    """An error aiohttp raised itself, with its headers (Allow...), as a problem document."""
    said = exc.text if exc.body is not None else None
    if not said or said == f"{exc.status}: {exc.reason}":  # aiohttp's placeholder text
        said = _GENERIC.get(exc.status, exc.reason)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        said = f"{request.method} is not allowed here (allowed: {allowed})"
    kept = {k: v for k, v in exc.headers.items() if k.lower() not in _BODY_HEADERS}
    return problem(exc.status, said, headers=kept)


_GENERIC = {404: "nothing is found at this path"}
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


def store_unavailable(retry_after: float) -> web.Response:
    return problem(
        503,
        "The object store cannot be reached just now; retry later.",
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )
