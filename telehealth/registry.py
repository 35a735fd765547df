"""Live sessions of one hub process, found by id or invite code; idle ones are closed.

Sessions hold peer connections, so they live in this process; what they capture is stored in
the archive as soon as it is taken. With ``rooms`` (nodes sharing one index), each session is
also recorded as this node's in the index, so that the other nodes relay its calls here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from pydicom import Dataset

from hub.archive import Archive, Source
from hub.config import TelehealthSettings
from telehealth.live_settings import LiveSettings
from telehealth.rooms import Rooms
from telehealth.session import Session
from telehealth.us_image import Calibration

log = logging.getLogger(__name__)


class TooManySessions(RuntimeError):
    """The hub holds as many live sessions as it is configured for."""


class SessionRegistry:
    def __init__(self, archive: Archive, settings: TelehealthSettings) -> None:
        self.archive = archive
        self.settings = settings  # as of the last session started here
        self.live = LiveSettings(archive.engine, settings)
        self._by_id: dict[str, Session] = {}
        self._by_code: dict[str, Session] = {}
        self.sockets: set = set()  # open signalling WebSockets
        self.rooms: Rooms | None = None  # set while serving beside other nodes (routes.py)
        # Frame encoding and instance building: off the event loop, at most two at a time.
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="telehealth-capture")

    async def create(
        self, attributes: Dataset, calibration: Calibration | None, owner: str | None = None
    ) -> Session:
        """``owner``: the clinic that starts the session. What is captured in it is the
        clinic's, whoever asks for the capture, and is stored under the owner's identity.
        Raises ``RoomsUnavailable`` (and keeps nothing) when the shared index did not record
        it."""
        self.settings = await self.live.current()
        if len(self._by_id) >= self.settings.max_sessions:
            raise TooManySessions(f"{len(self._by_id)} sessions are open; end one first")
        session = Session(
            attributes,
            self.settings,
            partial(self._store, owner=owner),
            calibration=calibration,
            executor=self.executor,
        )
        self._by_id[session.id] = session
        self._by_code[session.invite_code] = session
        if self.rooms is not None:
            try:
                await self.rooms.claim(session.id, session.invite_code)
            except BaseException:
                await self.end(session)
                raise
        return session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def by_code(self, code: str) -> Session | None:
        return self._by_code.get(code)

    async def end(self, session: Session) -> None:
        if self.rooms is not None:  # first: found here until the other nodes stop relaying
            await self.rooms.release(session.id)
        self._by_id.pop(session.id, None)
        self._by_code.pop(session.invite_code, None)
        await session.close()

    async def close(self) -> None:
        for session in list(self._by_id.values()):
            await self.end(session)
        self.executor.shutdown(wait=True)

    async def reap_idle(self, interval: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for session in list(self._by_id.values()):
                idle_for = now - session.last_active
                if session.idle and idle_for > session.settings.idle_timeout_seconds:
                    log.info("closing idle telehealth session %s", session.id)
                    with contextlib.suppress(Exception):
                        await self.end(session)

    async def _store(self, data: bytes, actor: str, *, owner: str | None) -> dict[str, Any]:
        result = await self.archive.ingest_bytes(
            data, source=Source(door="telehealth", actor=owner or actor or None)
        )
        if not result.ok:
            raise RuntimeError(f"the archive refused the capture: {result.message}")
        return {
            "state": "stored",
            "status": result.status,
            "sop_class_uid": result.sop_class_uid,
            "sop_instance_uid": result.sop_instance_uid,
            "study_uid": result.study_uid,
            "series_uid": result.series_uid,
        }
