"""The last line of defence: an exception no handler expected becomes a 500 problem document.

RFC 9457 ``application/problem+json``, with an id that names the log record holding the
traceback; the client never sees the traceback. Each one is counted per route, so a test or an
operator can tell that the hub met a bug rather than bad input.

A store that cannot be reached (``StoreUnavailable``: S3 down, refusing the credentials) is no
bug: any door reading from it answers 503 with Retry-After, and the cause is logged.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from hub.archive.blobs import StoreUnavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


@dataclass
class UnexpectedErrors:
    total: int = 0
    by_route: Counter[str] = field(default_factory=Counter)

    def count(self, route: str) -> None:
        self.total += 1
        self.by_route[route] += 1


ERRORS_KEY: web.AppKey[UnexpectedErrors] = web.AppKey("unexpected_errors", UnexpectedErrors)


def problem(status: int, title: str, detail: str, **members: object) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **members}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON)


def install(app: web.Application) -> None:
    """Add the error middleware; call first, so that it is the outermost one."""
    app[ERRORS_KEY] = UnexpectedErrors()
    app.middlewares.append(unexpected_errors)


@web.middleware
async def unexpected_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (web.HTTPException, ConnectionError):
        raise  # a deliberate answer, or the client went away
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
            "Internal Server Error",
            f"The hub met an unexpected error; it is logged as {error_id}.",
            error_id=error_id,
        )


def store_unavailable(retry_after: float) -> web.Response:
    response = problem(
        503,
        "Service Unavailable",
        "The object store cannot be reached just now; retry later.",
    )
    response.headers["Retry-After"] = str(max(1, round(retry_after)))
    return response
