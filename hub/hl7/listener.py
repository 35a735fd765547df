"""The MLLP listener: one asyncio server, one task per connection, one ACK per message.

Reading a message, applying it and answering it happen in turn on a connection (MLLP is
synchronous: a sender waits for the ACK before its next message). Parsing runs in a thread;
the index is reached through the async engine. A framing error closes the connection with a
log line; a message that cannot be applied gets a NAK and the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from sqlalchemy.ext.asyncio import AsyncEngine

from hub.config import Hl7Settings
from hub.hl7.ack import APPLICATION_ERROR, Nak, accept, not_applied, reject
from hub.hl7.adt import changes_of
from hub.hl7.adt_apply import apply_patients
from hub.hl7.apply import Sender, apply
from hub.hl7.message import ORDERS, Received, read_header, read_message, reply_codec
from hub.hl7.mllp import FramingError, frame, read_block
from hub.hl7.orders import orders_of

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, engine: AsyncEngine, settings: Hl7Settings, application: str) -> None:
        self.engine, self.settings, self.application = engine, settings, application
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        cfg = self.settings
        tls = None
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            from hub.security.tls import http_ssl_context

            tls = await asyncio.to_thread(http_ssl_context, cfg.tls_cert, cfg.tls_key)
        self._server = await asyncio.start_server(
            self._connection, cfg.host, cfg.port, limit=cfg.max_message_bytes, ssl=tls
        )
        log.info("HL7 MLLP listening on %s:%d%s", cfg.host, self.port, " (TLS)" if tls else "")

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        host, port = writer.get_extra_info("peername")[:2]
        address = f"{host}:{port}"
        try:
            while (block := await self._next(reader, address)) is not None:
                writer.write(frame(await self._answer(block, address)))
                await writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("HL7 %s: connection lost: %s", address, exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _next(self, reader: asyncio.StreamReader, address: str) -> bytes | None:
        """The next message; None to close the connection."""
        try:
            async with asyncio.timeout(self.settings.idle_seconds):
                return await read_block(reader, self.settings.max_message_bytes)
        except TimeoutError:
            log.info("HL7 %s: nothing for %gs; closed", address, self.settings.idle_seconds)
        except FramingError as exc:
            log.warning("HL7 %s: %s; connection closed", address, exc)
        return None

    async def _answer(self, block: bytes, address: str) -> bytes:
        header = None
        try:
            header = await asyncio.to_thread(read_header, block)
            received = await asyncio.to_thread(read_message, block, header)
            sender = Sender(received.sender, address, received.control_id)
            note = await self._apply(received, sender)
            log.info("HL7 %s: %s applied", address, received.control_id)
            reply = accept(received.message, self.application, note)
        except Nak as nak:
            log.warning("HL7 %s: %s %s", address, nak.ack, nak.reason)
            reply = reject(header, self.application, nak)
        except Exception:  # the index failed us: the sender keeps the message and retries
            log.exception("HL7 %s: message not applied", address)
            nak = not_applied(APPLICATION_ERROR, "internal error; send the message again later")
            reply = reject(header, self.application, nak)
        return reply.encode(reply_codec(header), "replace")

    async def _apply(self, received: Received, sender: Sender) -> str:
        if received.kind in ORDERS:
            orders = await asyncio.to_thread(orders_of, received.message)
            return await apply(self.engine, orders, sender)
        changes = await asyncio.to_thread(changes_of, received.message, received.kind)
        return await apply_patients(self.engine, changes, sender)
