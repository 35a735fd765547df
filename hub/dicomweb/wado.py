"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered and thumbnails."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from hub.app_keys import ARCHIVE_KEY
from hub.archive import InstanceRef, NotFound
from hub.archive.archive import Archive
from hub.archive.blobs import StoreUnavailable
from hub.archive.errors import NotAcceptable
from hub.archive.model import FrameTable
from hub.dicomweb import media, render
from hub.dicomweb.budget import decode_budget, decoded_frame_bytes
from hub.dicomweb.multipart import (
    CRLF,
    closing,
    content_type,
    join_parts,
    new_boundary,
    part_head,
    stream_files,
)
from hub.dicomweb.responses import (
    base_url,
    cache_headers,
    dicom_json,
    not_modified,
    problem,
)
from hub.security.visibility import request_scope

MAX_FRAMES_PER_REQUEST = 10_000
BUFFERED_FRAME_BYTES = 8 << 20  # stored frames up to this are sent as one body, more streamed


def _refs_etag(refs: list[InstanceRef], variant: str) -> str:
    h = hashlib.sha256(variant.encode())
    for ref in refs:
        h.update(ref.sha256.encode())
    return f'"{h.hexdigest()[:40]}"'


def _immutable(archive: Archive) -> bool:
    return archive.settings.duplicate_policy == "reject"


async def _refs(request: web.Request) -> list[InstanceRef]:
    """What the path names that the caller may read: a study or series answers with the
    caller's part of it."""
    m = request.match_info
    return await request.app[ARCHIVE_KEY].instances(
        m["study"], m.get("series"), m.get("instance"), scope=request_scope(request)
    )


# -- instances -----------------------------------------------------------------
async def retrieve(request: web.Request) -> web.StreamResponse:
    archive = request.app[ARCHIVE_KEY]
    refs = await _refs(request)
    stored = {ref.transfer_syntax_uid for ref in refs}
    choices = {ts: media.negotiate_instances(request.headers.get("Accept"), ts) for ts in stored}
    etag = _refs_etag(
        refs, "dicom:" + ",".join(sorted(c.transfer_syntax for c in choices.values()))
    )
    if (hit := not_modified(request, etag)) is not None:
        return hit
    boundary = new_boundary()
    headers = cache_headers(etag, _immutable(archive) and "instance" in request.match_info)
    if any(c.decode for c in choices.values()):
        return await _retrieve_decoded(request, archive, refs, choices, boundary, headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "multipart/related"
    response.headers["Content-Type"] = content_type(media.DICOM, boundary)
    items = [(_dicom_part_type(ref.transfer_syntax_uid), ref.sha256) for ref in refs]
    await stream_files(request, response, archive.store, items, boundary)  # prepares it
    await response.write_eof()
    return response


def _dicom_part_type(ts: str) -> str:
    return f"{media.DICOM}; transfer-syntax={ts}"


async def _retrieve_decoded(
    request: web.Request, archive, refs, choices, boundary, headers
) -> web.StreamResponse:
    """Instances transcoded one at a time within the decode budget, each written when ready."""
    response = web.StreamResponse(headers=headers)
    response.headers["Content-Type"] = content_type(media.DICOM, boundary)
    await response.prepare(request)
    for ref in refs:
        choice = choices[ref.transfer_syntax_uid]
        size = ref.size
        if choice.decode:
            size += decoded_frame_bytes(ref) * max(1, ref.number_of_frames)
        async with decode_budget().reserve(size):
            if choice.decode:
                data = await _on_plain_file(archive, ref, render.decoded_instance)
            else:
                data = b"".join([block async for block in archive.store.stream(ref.sha256)])
            part_type = _dicom_part_type(choice.transfer_syntax)
            await response.write(part_head(boundary, part_type) + data + CRLF)
    await response.write(closing(boundary))
    await response.write_eof()
    return response


# -- metadata ------------------------------------------------------------------
async def metadata(request: web.Request) -> web.Response:
    archive = request.app[ARCHIVE_KEY]
    refs = await _refs(request)
    # A correction of the patient's demographics changes the metadata of unchanged objects.
    corrections = "".join(sorted({ref.corrected for ref in refs}))
    etag = _refs_etag(refs, "metadata" + corrections)
    if (hit := not_modified(request, etag)) is not None:
        return hit
    base = base_url(request)
    pieces = []
    for ref in refs:
        text = await archive.metadata_json(ref)
        url = f"{base}/studies/{ref.study_uid}/series/{ref.series_uid}/instances/{ref.sop_instance_uid}/"
        pieces.append(text.replace('"BulkDataURI":"', '"BulkDataURI":"' + url))
    body = ("[" + ",".join(pieces) + "]").encode()
    return dicom_json(body, headers=cache_headers(etag, immutable=False))


# -- frames --------------------------------------------------------------------
def parse_frame_list(text: str, count: int) -> list[int]:
    if text.isascii() and text.isdigit():  # one frame: what tiled viewers ask for
        number = int(text)
        if not 1 <= number <= count:
            raise LookupError(f"Frame {number} does not exist; the instance has {count} frame(s)")
        return [number]
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise ValueError(f"Frame list {text!r} is not a comma-separated list of numbers") from exc
    if not numbers or len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise ValueError(f"Ask for between 1 and {MAX_FRAMES_PER_REQUEST} frames")
    seen: set[int] = set()
    for n in numbers:
        if n in seen:
            raise ValueError(f"Frame {n} is asked for more than once; list each frame once")
        seen.add(n)
    bad = [n for n in numbers if n < 1 or n > count]
    if bad:
        raise LookupError(f"Frame {bad[0]} does not exist; the instance has {count} frame(s)")
    return numbers


async def _frame_entry(request: web.Request) -> tuple[InstanceRef, FrameTable | None]:
    archive = request.app[ARCHIVE_KEY]
    m = request.match_info
    scope = request_scope(request)
    entry = archive.cached_frame_table(m["study"], m["series"], m["instance"], scope=scope)
    if entry is not None:
        return entry
    return await archive.frame_table(m["study"], m["series"], m["instance"], scope=scope)


async def frames(request: web.Request) -> web.Response:
    archive = request.app[ARCHIVE_KEY]
    ref, table = await _frame_entry(request)
    try:
        numbers = parse_frame_list(request.match_info["frames"], ref.number_of_frames)
    except ValueError as exc:
        return problem(400, str(exc))
    except LookupError as exc:
        return problem(404, str(exc))
    choice = _negotiate_frames(
        request.headers.get("Accept"), ref.transfer_syntax_uid, len(numbers) > 1
    )
    etag = f'"{ref.sha256[:32]}-{request.match_info["frames"]}-{choice.transfer_syntax}"'
    if (hit := not_modified(request, etag)) is not None:
        return hit
    headers = cache_headers(etag, _immutable(archive))
    part_type = _frame_part_type(choice)
    decoded = choice.decode or table is None
    if choice.multipart and (decoded or _stored_bytes(table, numbers) > BUFFERED_FRAME_BYTES):
        if decoded:
            parts = _decoded_frames(archive, ref, numbers, choice)
        else:
            parts = _stored_frames(archive, ref, table, numbers)
        return await _stream_frames(request, headers, choice, part_type, parts)
    if decoded:
        payloads = [p async for p in _decoded_frames(archive, ref, numbers, choice)]
    else:
        payloads = [await _read_frame(archive, ref, table, n) for n in numbers]
    if not choice.multipart:
        headers["Content-Type"] = part_type
        return web.Response(body=payloads[0], headers=headers)
    boundary = _frame_boundary(payloads)
    headers["Content-Type"] = content_type(choice.media_type, boundary)
    body = join_parts(((part_type, p) for p in payloads), boundary)
    return web.Response(body=body, headers=headers)


def _stored_bytes(table: FrameTable, numbers: list[int]) -> int:
    return sum(length for n in numbers for _, length in table.ranges[n - 1])


async def _stream_frames(
    request: web.Request,
    headers: dict,
    choice: media.Choice,
    part_type: str,
    payloads: AsyncIterator[bytes],
) -> web.StreamResponse:
    """A multipart answer written frame by frame as each is ready, never held whole."""
    boundary = new_boundary()
    response = web.StreamResponse(headers=headers)
    response.headers["Content-Type"] = content_type(choice.media_type, boundary)
    await response.prepare(request)
    async with contextlib.aclosing(payloads):  # a client gone mid-way frees the budget at once
        async for payload in payloads:
            await response.write(part_head(boundary, part_type) + payload + CRLF)
    await response.write(closing(boundary))
    await response.write_eof()
    return response


async def _stored_frames(
    archive: Archive, ref: InstanceRef, table: FrameTable, numbers: list[int]
) -> AsyncIterator[bytes]:
    for n in numbers:
        yield await _read_frame(archive, ref, table, n)


# One boundary for the frame responses of this process. aiohttp parses a response's Content-Type
# with the e-mail package (about 0.2 ms) whenever something reads response.content_type, and
# caches the result by the header's text; a fresh boundary per response defeated that cache and
# cost more than the rest of the request. A payload that happens to hold it gets a fresh one.
FRAME_BOUNDARY = new_boundary()


def _frame_boundary(payloads: list[bytes]) -> str:
    marker = FRAME_BOUNDARY.encode()
    if any(marker in payload for payload in payloads):
        return new_boundary()
    return FRAME_BOUNDARY


@lru_cache(maxsize=256)
def _negotiate_frames(accept: str | None, stored_ts: str, several: bool) -> media.Choice:
    """Viewers send the same few Accept values for every tile: negotiate each once."""
    return media.negotiate_frames(accept, stored_ts, 2 if several else 1)


def _frame_part_type(choice: media.Choice) -> str:
    return f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}"


async def _read_frame(archive: Archive, ref: InstanceRef, table: FrameTable, number: int) -> bytes:
    ranges = table.ranges[number - 1]
    if len(ranges) == 1:
        return await archive.store.read_range(ref.sha256, *ranges[0])
    return b"".join(await archive.store.read_ranges(ref.sha256, ranges))


async def _decoded_frames(
    archive: Archive, ref: InstanceRef, numbers: list[int], choice: media.Choice
) -> AsyncIterator[bytes]:
    """Each frame decoded in an executor, one at a time, within the process's decode budget;
    a frame's bytes are given back to the budget when the caller asks for the next one."""
    budget = decode_budget()
    extract = _extracted if not choice.decode else None
    for n in numbers:
        size = ref.size if extract else decoded_frame_bytes(ref)
        async with budget.reserve(size):
            if extract:
                yield await _on_plain_file(archive, ref, extract, n, ref.number_of_frames)
            else:
                yield await _on_plain_file(archive, ref, render.decoded_frame, n - 1)


def _extracted(path: Path, n: int, count: int) -> bytes:
    """Stored bytes that have no frame table (deflated files): extract by parsing."""
    from pydicom import dcmread
    from pydicom.encaps import get_frame

    ds = dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return get_frame(ds.PixelData, n - 1, number_of_frames=count)
    size = len(ds.PixelData) // count
    return ds.PixelData[(n - 1) * size : n * size]


async def _on_plain_file(archive: Archive, ref: InstanceRef, fn, *args):
    """Run fn(path, *args) in an executor on a file holding the object's plain bytes."""
    async with archive.store.materialize(ref.sha256) as path:
        return await asyncio.get_running_loop().run_in_executor(None, fn, path, *args)


# -- bulk data -----------------------------------------------------------------
async def bulkdata(request: web.Request) -> web.Response:
    archive = request.app[ARCHIVE_KEY]
    (ref,) = await _refs(request)
    tag = request.match_info["tag"].upper()
    ranges = await archive.bulk_ranges(ref)
    if tag not in ranges:
        return problem(404, f"No bulk data element {tag} in this instance")
    if tag == "7FE00010" and ref.number_of_frames >= 1:
        frame_list = ",".join(str(n) for n in range(1, ref.number_of_frames + 1))
        request.match_info["frames"] = frame_list
        return await frames(request)
    offset, length, _vr = ranges[tag]
    multipart = media.negotiate_bulkdata(request.headers.get("Accept"))
    etag = f'"{ref.sha256[:32]}-{tag}-{"multipart" if multipart else "single"}"'
    if (hit := not_modified(request, etag)) is not None:
        return hit
    data = await archive.store.read_range(ref.sha256, offset, length)
    headers = cache_headers(etag, _immutable(archive))
    if not multipart:
        headers["Content-Type"] = media.OCTET_STREAM
        return web.Response(body=data, headers=headers)
    boundary = new_boundary()
    headers["Content-Type"] = content_type(media.OCTET_STREAM, boundary)
    return web.Response(body=join_parts([(media.OCTET_STREAM, data)], boundary), headers=headers)


# -- rendered and thumbnails ---------------------------------------------------
def _viewport(request: web.Request) -> tuple[int, int] | None:
    text = request.rel_url.query.get("viewport")
    if not text:
        return None
    parts = text.split(",")
    try:
        width, height = int(parts[0]), int(parts[1] if len(parts) > 1 else parts[0])
    except ValueError as exc:
        raise ValueError("viewport must be width,height") from exc
    if not (0 < width <= 8192 and 0 < height <= 8192):
        raise ValueError("viewport must be between 1 and 8192 pixels")
    return width, height


def _quality(request: web.Request) -> int:
    try:
        quality = int(request.rel_url.query.get("quality", "90"))
    except ValueError as exc:
        raise ValueError("quality must be an integer from 1 to 100") from exc
    if not 1 <= quality <= 100:
        raise ValueError("quality must be an integer from 1 to 100")
    return quality


async def _render(
    request: web.Request, ref: InstanceRef, index: int, viewport, cache_variant: str
) -> web.Response:
    archive = request.app[ARCHIVE_KEY]
    media_type = media.wants_rendered(request.headers.get("Accept"))
    try:
        quality = _quality(request)
    except ValueError as exc:
        return problem(400, str(exc))
    etag = f'"{ref.sha256[:32]}-{cache_variant}-{index}-{viewport}-{quality}-{media_type}"'
    if (hit := not_modified(request, etag)) is not None:
        return hit
    try:
        data = await _on_plain_file(
            archive, ref, render.rendered, index, media_type, viewport, quality
        )
    except StoreUnavailable:
        raise
    except Exception as exc:
        raise NotAcceptable(f"This instance cannot be rendered: {exc}") from exc
    headers = cache_headers(etag, _immutable(archive))
    return web.Response(body=data, content_type=media_type, headers=headers)


async def rendered_instance(request: web.Request) -> web.Response:
    (ref,) = await _refs(request)
    try:
        viewport = _viewport(request)
    except ValueError as exc:
        return problem(400, str(exc))
    frame_text = request.match_info.get("frames")
    index = 0
    if frame_text:
        try:
            numbers = parse_frame_list(frame_text, ref.number_of_frames)
        except ValueError as exc:
            return problem(400, str(exc))
        except LookupError as exc:
            return problem(404, str(exc))
        index = numbers[0] - 1
    return await _render(request, ref, index, viewport, "rendered")


async def thumbnail(request: web.Request) -> web.Response:
    refs = await _refs(request)
    try:
        viewport = _viewport(request) or (render.DEFAULT_THUMBNAIL, render.DEFAULT_THUMBNAIL)
    except ValueError as exc:
        return problem(400, str(exc))
    ref = representative(refs)
    index = ref.number_of_frames // 2 if "frames" not in request.match_info else 0
    return await _render(request, ref, index, viewport, "thumbnail")


def representative(refs: list[InstanceRef]) -> InstanceRef:
    """The instance that best stands for a study or series: a slide's thumbnail or smallest
    whole level (never its label, which may carry identifiers), else the middle image."""
    images = [r for r in refs if r.rows]
    if not images:
        raise NotFound("Nothing in this study or series has pixel data")
    flavour = {r.sop_instance_uid: (r.image_type.split("\\") + ["", "", ""])[2] for r in images}
    for wanted in ("THUMBNAIL", "VOLUME", "OVERVIEW"):
        slides = [r for r in images if flavour[r.sop_instance_uid] == wanted]
        if slides:
            return min(slides, key=lambda r: r.number_of_frames)
    return images[len(images) // 2]
