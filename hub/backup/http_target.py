"""A target on an append-only receiver (``tessera backup-receiver``), reached over HTTP(S).

It answers the calls of ``DirectoryTarget``. Objects are named as in the receiver's folder
(``blobs/<sha256>``, ``manifests/<name>.json``, ``records/<name>.json``, ``signing.pub``,
``recovery-kit.json``); each PUT carries the SHA-256 of its body, which the receiver checks
before it stores anything. Blobs are spooled on this side (``spool_dir``), so a blob is hashed
once, then sent from the spool. The receiver never overwrites and never deletes: an object it
refuses is a ``TargetError`` that gives its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import aiohttp

from hub.archive.blobs import CHUNK, BlobMissing, Spool
from hub.archive.blobs.spool import FileSpool, clear_spools
from hub.backup.target import MANIFESTS, PUBLIC_KEY, RECORDS, RECOVERY_KIT, TargetError

SHA256_HEADER = "X-Content-SHA256"
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)


class Receiver:
    """The HTTP calls, with the bearer token read from its file on first use."""

    def __init__(self, url: str, token_file: Path) -> None:
        self.url = url.rstrip("/")
        self.token_file = token_file
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            try:
                token = (await asyncio.to_thread(self.token_file.read_text)).strip()
            except OSError as exc:
                raise TargetError(f"the receiver's token file cannot be read: {exc}") from None
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
            )
        return self._session

    async def get(self, name: str) -> bytes | None:
        """The object's bytes; None when the receiver holds none of that name."""
        async with self._exchange("GET", name) as response:
            if response.status == 404:
                return None
            await _expect(response, name, 200)
            return await response.read()

    async def size(self, name: str) -> int | None:
        async with self._exchange("HEAD", name) as response:
            if response.status == 404:
                return None
            await _expect(response, name, 200)
            return int(response.headers["Content-Length"])

    async def stream(self, name: str, chunk: int) -> AsyncIterator[bytes]:
        async with self._exchange("GET", name) as response:
            if response.status == 404:
                raise BlobMissing(f"the receiver holds no {name}")
            await _expect(response, name, 200)
            async for block in response.content.iter_chunked(chunk):
                yield block

    async def put(self, name: str, body, sha256: str) -> bool:
        """Store ``body`` (bytes or an open file) as ``name``: True if stored, False if the
        receiver held these very bytes already."""
        async with self._exchange("PUT", name, data=body, sha256=sha256) as response:
            await _expect(response, name, 200, 201)
            return response.status == 201

    async def names(self, prefix: str) -> list[str]:
        async with self._exchange("GET", None, params={"prefix": prefix}) as response:
            await _expect(response, prefix, 200)
            return (await response.json())["names"]

    @asynccontextmanager
    async def _exchange(
        self, method: str, name: str | None, *, data=None, sha256: str | None = None, params=None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request to ``/objects/NAME`` (``/list`` without a name); a receiver that cannot
        be reached, or goes away during the exchange, is a ``TargetError``."""
        session = await self.session()
        url = f"{self.url}/objects/{quote(name)}" if name else f"{self.url}/list"
        headers = {SHA256_HEADER: sha256} if sha256 else None
        try:
            async with session.request(
                method, url, data=data, headers=headers, params=params
            ) as response:
                yield response
        except aiohttp.ClientError as exc:
            raise TargetError(f"the receiver at {self.url} failed: {exc!r}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _expect(response: aiohttp.ClientResponse, name: str, *statuses: int) -> None:
    if response.status not in statuses:
        text = await response.text()
        try:
            reason = json.loads(text)["detail"]  # a problem document
        except (ValueError, KeyError, TypeError):
            reason = text.strip() or response.reason
        raise TargetError(f"the receiver refused {name}: {response.status} {reason}")


class HttpBlobs:
    """The part of the ``BlobStore`` protocol a backup, a verify and a restore use."""

    def __init__(self, receiver: Receiver, spool_dir: Path | None) -> None:
        self.receiver = receiver
        self.spool_dir = spool_dir

    def spool(self) -> FileSpool:
        if self.spool_dir is None:
            raise TargetError("this target was opened for reading only")
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return FileSpool(self.spool_dir)

    async def put(self, spool: Spool, *, name: str | None = None) -> bool:
        assert isinstance(spool, FileSpool), "an HTTP target sends its own spools"
        sha256, _ = await asyncio.to_thread(spool.finish)
        with await asyncio.to_thread(spool.reader) as body:
            return await self.receiver.put(f"blobs/{name or sha256}", body, sha256)

    async def put_bytes(self, data: bytes) -> str:
        sha256 = await asyncio.to_thread(_sha256, data)
        await self.receiver.put(f"blobs/{sha256}", data, sha256)
        return sha256

    async def exists(self, sha256: str) -> bool:
        return await self.receiver.size(f"blobs/{sha256}") is not None

    async def size(self, sha256: str) -> int:
        size = await self.receiver.size(f"blobs/{sha256}")
        if size is None:
            raise BlobMissing(f"the receiver holds no blob {sha256}")
        return size

    async def stream(self, sha256: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
        async for block in self.receiver.stream(f"blobs/{sha256}", chunk):
            yield block

    async def clear_spools(self, older_than: float = 0.0) -> int:
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return 0
        return await asyncio.to_thread(clear_spools, self.spool_dir, older_than)

    async def close(self) -> None:
        pass


class HttpTarget:
    def __init__(self, url: str, token_file: Path, spool_dir: Path | None) -> None:
        self.receiver = Receiver(url, token_file)
        self.blobs = HttpBlobs(self.receiver, spool_dir)
        self.url = url

    @property
    def spool_dir(self) -> Path:
        if self.blobs.spool_dir is None:
            raise TargetError("this target was opened for reading only")
        return self.blobs.spool_dir

    async def manifest_names(self) -> list[str]:
        return await self._names(f"{MANIFESTS}/")

    async def read_manifest(self, name: str) -> bytes:
        return await self._read(f"{MANIFESTS}/{name}.json")

    async def write_manifest(self, name: str, data: bytes) -> None:
        await self._write(f"{MANIFESTS}/{name}.json", data)

    async def write_record(self, name: str, data: bytes) -> None:
        await self._write(f"{RECORDS}/{name}.json", data)

    async def record_names(self, kind: str) -> list[str]:
        return await self._names(f"{RECORDS}/{kind}-")

    async def read_record(self, name: str) -> bytes:
        return await self._read(f"{RECORDS}/{name}.json")

    async def read_public_key(self) -> str | None:
        data = await self.receiver.get(PUBLIC_KEY)
        return data.decode() if data is not None else None

    async def write_public_key(self, text: str) -> None:
        await self._write(PUBLIC_KEY, text.encode())

    async def read_recovery_kit(self) -> bytes | None:
        return await self.receiver.get(RECOVERY_KIT)

    async def write_recovery_kit(self, data: bytes) -> None:
        await self._write(RECOVERY_KIT, data)

    async def close(self) -> None:
        await self.receiver.close()

    async def _names(self, prefix: str) -> list[str]:
        """Names sort by time, as in a folder: the stems, oldest first."""
        folder = prefix.split("/")[0] + "/"
        names = await self.receiver.names(prefix)
        return sorted(n.removeprefix(folder).removesuffix(".json") for n in names)

    async def _read(self, name: str) -> bytes:
        data = await self.receiver.get(name)
        if data is None:
            raise FileNotFoundError(f"the receiver holds no {name}")
        return data

    async def _write(self, name: str, data: bytes) -> None:
        await self.receiver.put(name, data, await asyncio.to_thread(_sha256, data))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
