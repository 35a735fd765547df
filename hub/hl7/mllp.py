"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>.

python-hl7's ``MLLPStreamReader.readblock`` looks for the start byte only once a whole block has
arrived, so a peer speaking something else (an HTTP request, a bare message) would hold its
connection until the size limit or the idle timeout. Reading the start byte first refuses it at
once; the rest is ``StreamReader.readuntil`` with the stream's size limit.
"""

from __future__ import annotations

import asyncio

from hl7.mllp.streams import CARRIAGE_RETURN, END_BLOCK, START_BLOCK

END = END_BLOCK + CARRIAGE_RETURN


class FramingError(Exception):
    """The bytes are not an MLLP block the listener will read; the connection is closed."""


async def read_block(reader: asyncio.StreamReader, max_bytes: int) -> bytes | None:
    """The next message's bytes, or None when the peer closed cleanly between messages.

    ``max_bytes`` is the reader's limit (``asyncio.start_server(limit=...)``), which bounds a
    message.
    """
    first = await reader.read(1)
    if not first:
        return None
    if first != START_BLOCK:
        raise FramingError(f"not MLLP: the block starts with {first!r}, not <VT>")
    try:
        block = await reader.readuntil(END)
    except asyncio.LimitOverrunError:
        raise FramingError(f"message longer than {max_bytes} bytes") from None
    except asyncio.IncompleteReadError as exc:
        raise FramingError(
            f"connection closed within a message ({len(exc.partial)} bytes)"
        ) from None
    return block[: -len(END)]


def frame(message: bytes) -> bytes:
    return START_BLOCK + message + END
