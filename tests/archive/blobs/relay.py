"""A TCP relay in front of the S3 server that tampers with one chosen request on the wire.

Used to provoke, for real, what a network or a dying client does to an upload: a flipped byte
in a part's body, or a part that never arrives.
"""

from __future__ import annotations

import asyncio
import contextlib

FLIP_AT = 1000  # the body byte that a corrupting relay flips


class Relay:
    """Relays to ``127.0.0.1:upstream_port``; the first ``method`` request (PUT by default) whose
    request line contains ``marker`` gets one body byte flipped (``mode="corrupt"``), is held
    back for good (``mode="stall"``), or held back until ``released`` is set (``mode="hold"``).
    ``tampered`` counts the requests so treated."""

    def __init__(
        self, upstream_port: int, marker: bytes, mode: str = "corrupt", method: bytes = b"PUT"
    ) -> None:
        assert mode in ("corrupt", "stall", "hold")
        self.upstream_port = upstream_port
        self.marker = marker
        self.method = method
        self.mode = mode
        self.tampered = 0
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(
                self._pump(client_r, server_w, upstream=True),
                self._pump(server_r, client_w, upstream=False),
            )
        finally:
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        pending = b""
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(1 << 16):
                if upstream and not self.tampered:
                    pending += data
                    data, pending = self._inspect(pending)
                if self.tampered and self.mode == "stall" and upstream:
                    continue  # swallow the stalled request and all that follows on it
                if upstream and pending and self.tampered and self.mode == "hold":
                    await self.released.wait()
                    data, pending = data + pending, b""
                writer.write(data)
                await writer.drain()
            writer.write(pending)
            with contextlib.suppress(OSError):
                writer.write_eof()

    def _inspect(self, buffered: bytes) -> tuple[bytes, bytes]:
        """(bytes to pass on, bytes to hold back): a request head is held until it is known
        whether its request is the target, and the target's body until byte FLIP_AT is in."""
        head_end = buffered.find(b"\r\n\r\n")
        if head_end < 0:
            return b"", buffered
        request_line = buffered.split(b"\r\n", 1)[0]
        if not (request_line.startswith(self.method + b" ") and self.marker in request_line):
            return buffered, b""
        if self.mode == "stall":
            self.tampered += 1
            return b"", b""
        if self.mode == "hold":
            self.tampered += 1
            return b"", buffered
        target = head_end + 4 + FLIP_AT
        if len(buffered) <= target:
            return b"", buffered
        corrupted = bytearray(buffered)
        corrupted[target] ^= 0xFF
        self.tampered += 1
        return bytes(corrupted), b""
