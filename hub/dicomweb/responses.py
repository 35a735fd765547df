"""Shared response helpers for the DICOMweb door: DICOM JSON, errors, caching, URLs."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from hub import errors
from hub.app_keys import SETTINGS_KEY
from hub.forwarded import prefix_of

DICOM_JSON = "application/dicom+json"
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"
WARNING_TRUNCATED = '299 tessera "More results match than were returned; use limit and offset"'


def base_url(request: web.Request) -> str:
    """The absolute URL of the DICOMweb root: under the configured public URL, else as the
    client reached it (through a trusted proxy: see hub.forwarded)."""
    settings = request.app.get(SETTINGS_KEY)
    if settings is not None and settings.public_url:
        return settings.public_url.rstrip("/") + "/dicomweb"
    return f"{request.scheme}://{request.host}{prefix_of(request)}/dicomweb"


def dicom_json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type=DICOM_JSON, headers=headers)


def problem(status: int, message: str) -> web.Response:
    """An error with no DICOM body: a problem document with the reason, which is in a Warning
    header too (PS3.18 8.6.3)."""
    return errors.problem(status, message, headers={"Warning": warning(message)})


def warning(message: str) -> str:
    """A Warning header value; the text may echo client input, so controls are removed."""
    text = "".join(c if c.isprintable() and c != '"' else " " for c in message)
    return f'299 tessera "{text[:300]}"'


def not_modified(request: web.Request, etag: str) -> web.Response | None:
    match = request.headers.get("If-None-Match")
    if match and (match == "*" or etag in [m.strip() for m in match.split(",")]):
        return web.Response(status=304, headers={"ETag": etag})
    return None


def cache_headers(etag: str, immutable: bool) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": IMMUTABLE if immutable else REVALIDATE}


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}
