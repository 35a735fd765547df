"""``tessera backup-receiver --append-only --dir DIR --port P``: where backups go when the hub
must not be able to destroy them.

Run it as another OS user on the backup host; the hub reaches it with a bearer token (the
``--token-file``). It stores objects put-if-absent and nothing else: no DELETE (405), and a
PUT of a name it holds is 200 with the same bytes and 409 with others. Every PUT is checked
before anything is kept: the name (one of the layout below, so no path leaves DIR), the size
(413 past ``--max-object-bytes``), and the SHA-256 of the body against the one the hub sent
(``X-Content-SHA256``; a plain archive's blob names it). The body is spooled in ``DIR/tmp``,
synced, then hard-linked into place, which fails if the name exists: a killed receiver leaves
only spools, removed when it starts again, never a partial object.

DIR keeps the layout of a folder target (``hub.backup.target``), so ``tessera restore DIR``
works on the backup host itself::

    blobs/<sha256>            content-addressed objects, the snapshots and blob lists too
    manifests/<name>.json     signed manifests; records/<name>.json: verification records
    signing.pub, recovery-kit.json

``GET /objects/NAME`` (with Range) and ``HEAD`` read an object; ``GET /list?prefix=manifests/``
(or ``records/...``) names the manifests or records.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from aiohttp import web

from hub import errors
from hub.archive.blobs import CHUNK
from hub.archive.blobs.spool import FileSpool, clear_spools
from hub.backup.http_target import SHA256_HEADER
from hub.errors import Problem

MAX_OBJECT_BYTES = 64 << 30
SMALL_OBJECT_BYTES = 64 << 20  # manifests, records, the public key and the recovery kit
NAME = re.compile(
    r"blobs/[0-9a-f]{64}"
    r"|(?:manifests|records)/[0-9A-Za-z][0-9A-Za-z_.-]{0,127}\.json"
    r"|signing\.pub|recovery-kit\.json"
)
LISTED = re.compile(r"(manifests|records)/([0-9A-Za-z_.-]*)")
SHA256 = re.compile(r"[0-9a-f]{64}")


class Receiver:
    def __init__(self, root: Path, max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.max_object_bytes = max_object_bytes

    def path(self, name: str) -> Path:
        if name.startswith("blobs/"):
            sha = name.removeprefix("blobs/")
            return self.root / "blobs" / sha[:2] / sha[2:4] / sha
        return self.root / name

    async def put(self, request: web.Request) -> web.Response:
        name = _checked_name(request)
        declared = request.headers.get(SHA256_HEADER, name.removeprefix("blobs/")).lower()
        if not SHA256.fullmatch(declared):
            raise Problem(400, f"{SHA256_HEADER} must be 64 hex digits")
        limit = self.max_object_bytes if name.startswith("blobs/") else SMALL_OBJECT_BYTES
        limit = min(limit, self.max_object_bytes)
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(name, limit)
        spool = await asyncio.to_thread(FileSpool, self.tmp)
        try:
            received = 0
            async for block in request.content.iter_chunked(CHUNK):
                received += len(block)
                if received > limit:
                    raise _too_large(name, limit)
                await asyncio.to_thread(spool.write, block)
            sha, _ = await asyncio.to_thread(spool.finish)
            if sha != declared:
                raise Problem(
                    422, f"{name}: the body hashes to {sha}, not {declared}; nothing stored"
                )
            created = await asyncio.to_thread(_link_if_absent, spool.path, self.path(name))
        finally:
            await asyncio.to_thread(spool.discard)
        if created:
            return web.json_response({"stored": name, "sha256": sha}, status=201)
        held = await asyncio.to_thread(_file_sha256, self.path(name))
        if held != sha:
            raise Problem(
                409, f"{name} is held already, with other bytes: this receiver never overwrites"
            )
        return web.json_response({"held": name, "sha256": sha}, status=200)

    async def get(self, request: web.Request) -> web.StreamResponse:
        name = _checked_name(request)
        path = self.path(name)
        if not await asyncio.to_thread(path.is_file):
            raise Problem(404, f"no {name}")
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})

    async def list(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        match = LISTED.fullmatch(prefix)
        if match is None:
            raise Problem(400, "prefix must start with manifests/ or records/")
        folder, start = match.groups()

        def scan() -> list[str]:
            where = self.root / folder
            if not where.is_dir():
                return []
            return sorted(f"{folder}/{p.name}" for p in where.glob(f"{start}*.json") if p.is_file())

        return web.json_response({"names": await asyncio.to_thread(scan)})


def _checked_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not NAME.fullmatch(name):
        raise Problem(400, f"{name!r} is not an object name this receiver takes")
    return name


def _too_large(name: str, limit: int) -> Problem:
    return Problem(413, f"{name}: larger than {limit} bytes; nothing stored")


def _link_if_absent(spool: Path, path: Path) -> bool:
    """Put the synced spool in place under ``path`` unless something is there: a link fails
    on an existing name, where a rename would replace it."""
    with open(spool, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(spool, 0o444)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(spool, path)
    except FileExistsError:
        return False
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_token(path: Path) -> str:
    """The token in ``path``, made (random, mode 0600) when the file does not exist yet."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    if len(token) < 32:
        raise ValueError(f"the token in {path} is too short: at least 32 characters")
    return token


def make_app(receiver: Receiver, token: str) -> web.Application:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def authenticate(request: web.Request, handler):
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Problem(401, "a wrong or missing bearer token")
        return await handler(request)

    app = web.Application()
    errors.install(app)  # its refusals and aiohttp's own (405 for DELETE...) as problems
    app.middlewares.append(authenticate)
    resource = app.router.add_resource("/objects/{name:.+}")
    resource.add_route("GET", receiver.get)
    resource.add_route("HEAD", receiver.get)
    resource.add_route("PUT", receiver.put)
    app.router.add_get("/list", receiver.list)
    return app


def serve(root: Path, host: str, port: int, token_file: Path, max_object_bytes: int) -> None:
    receiver = Receiver(root, max_object_bytes)
    receiver.tmp.mkdir(parents=True, exist_ok=True)
    clear_spools(receiver.tmp)  # bodies a killed receiver was taking: never objects
    token = read_token(token_file)
    print(f"receiving into {root} on http://{host}:{port} (token in {token_file})", flush=True)
    web.run_app(make_app(receiver, token), host=host, port=port, print=None)
