"""multipart/related bodies: STOW-RS parts streamed to disk, WADO-RS responses streamed out.

Reading uses aiohttp's MultipartReader. Frame responses are joined by hand: they are small and
hot, and aiohttp's MultipartWriter adds per-part machinery we do not need there.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from hub.archive.blobs import CHUNK, BlobStore, Spool
from hub.dicomweb.media import DICOM

CRLF = b"\r\n"
# What aiohttp's multipart reader raises on a body that breaks the format.
MALFORMED = (ValueError, AssertionError, asyncio.IncompleteReadError, HttpProcessingError)


class TooLarge(Exception):
    pass


class BadBody(Exception):
    pass


@dataclass
class StagedPart:
    content_type: str
    spool: Spool | None  # None for a part we did not keep (wrong type)
    sha256: str = ""
    size: int = 0


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(media_type: str, boundary: str) -> str:
    return f'multipart/related; type="{media_type}"; boundary={boundary}'


def part_head(boundary: str, ctype: str) -> bytes:
    return b"--" + boundary.encode() + CRLF + b"Content-Type: " + ctype.encode() + CRLF + CRLF


def closing(boundary: str) -> bytes:
    return b"--" + boundary.encode() + b"--" + CRLF


def join_parts(parts: Iterable[tuple[str, bytes]], boundary: str) -> bytes:
    """One multipart/related body from (part content type, payload) pairs."""
    b = boundary.encode()
    chunks: list[bytes] = []
    for ctype, payload in parts:
        chunks += [b"--", b, CRLF, b"Content-Type: ", ctype.encode(), CRLF, CRLF, payload, CRLF]
    chunks += [b"--", b, b"--", CRLF]
    return b"".join(chunks)


async def stream_files(
    request: web.Request,
    response: web.StreamResponse,
    store: BlobStore,
    items: list[tuple[str, str]],
    boundary: str,
) -> None:
    """Send stored files (part content type, sha256) as parts, a chunk at a time. The response
    is prepared once the first block has been read, so that a store that cannot be reached
    still gets a status of its own (503) rather than a body cut short."""
    b = boundary.encode()
    for n, (ctype, sha) in enumerate(items):
        blocks = aiter(store.stream(sha))
        first = await anext(blocks, b"")
        if n == 0:
            await response.prepare(request)
        await response.write(b"--" + b + CRLF + b"Content-Type: " + ctype.encode() + CRLF + CRLF)
        if first:
            await response.write(first)
        async for block in blocks:
            await response.write(block)
        await response.write(CRLF)
    if not items:
        await response.prepare(request)
    await response.write(b"--" + b + b"--" + CRLF)


async def stage_parts(
    request: web.Request, store: BlobStore, max_bytes: int
) -> AsyncIterator[StagedPart]:
    """Yield each part of a STOW-RS body, written to a spool of the store (hashed on the way).

    Raises BadBody for a malformed or truncated body and TooLarge past max_bytes; the caller
    discards the spools it was given.
    """
    try:
        reader = MultipartReader(request.headers, request.content)
    except (AssertionError, ValueError, KeyError) as exc:
        raise BadBody(f"Not a multipart body: {exc}") from exc
    total = 0
    while True:
        try:
            part = await reader.next()
        except MALFORMED as exc:
            raise BadBody(f"Malformed multipart body: {exc}") from exc
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise BadBody("Nested multipart parts are not supported")
        ctype = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        staged, total = await _stage_one(part, ctype, store, total, max_bytes)
        yield staged


async def _stage_one(
    part: BodyPartReader, ctype: str, store: BlobStore, total: int, max_bytes: int
) -> tuple[StagedPart, int]:
    loop = asyncio.get_running_loop()
    spool = await loop.run_in_executor(None, store.spool) if ctype == DICOM else None
    size = 0
    try:
        while True:
            try:
                chunk = await part.read_chunk(CHUNK)
            except MALFORMED as exc:
                raise BadBody(f"Malformed multipart body: {exc}") from exc
            if not chunk:
                break
            size += len(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge(f"The body exceeds the limit of {max_bytes} bytes")
            if spool is not None:
                await loop.run_in_executor(None, spool.write, chunk)
        if not part.at_eof():
            raise BadBody("Truncated multipart body")
        sha256 = (await loop.run_in_executor(None, spool.finish))[0] if spool else ""
    except BaseException:
        if spool is not None:
            await asyncio.shield(loop.run_in_executor(None, spool.discard))
        raise
    return StagedPart(ctype, spool, sha256, size), total
