"""The archive facade the doors use: ingest, query, locate instances and frames."""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.archive import frametable, orphans, query
from hub.archive.blobs import CHUNK, BlobStore, Spool
from hub.archive.blobs.configured import plain_store
from hub.archive.corrected import presented_json
from hub.archive.errors import NotFound
from hub.archive.index import instances, make_engine, patients, series, studies
from hub.archive.ingest import Expected, IndexedHook, Ingestor, ScopeResolver, Subscriber
from hub.archive.model import FrameTable, Indexed, IngestResult, InstanceRef, Source
from hub.archive.scope import ReadScope
from hub.config import Settings

if TYPE_CHECKING:
    from hub.archive.migrations.runner import SchemaMode

VERSIONED_CACHE_SECONDS = 2.0

REF_COLUMNS = (
    instances.c.id,
    studies.c.study_uid,
    series.c.series_uid,
    instances.c.sop_uid,
    instances.c.sop_class_uid,
    instances.c.transfer_syntax,
    instances.c.sha256,
    instances.c.size,
    instances.c.number_of_frames,
    patients.c.patient_id,
    instances.c.rows,
    instances.c.columns,
    instances.c.image_type,
    instances.c.actor,
    series.c.modality,
    patients.c.corrected,
)


class Archive:
    def __init__(self, settings: Settings, engine: AsyncEngine, store: BlobStore) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.ingestor = Ingestor(engine, store, settings.duplicate_policy)
        self._frames: OrderedDict[str, tuple[InstanceRef, FrameTable | None]] = OrderedDict()
        # Under the version policy a SOP Instance UID can get new bytes. This process forgets
        # its entry when it stores the new version; other processes (readers) re-check after
        # VERSIONED_CACHE_SECONDS.
        self._versioned = settings.duplicate_policy == "version"
        self._cached_at: dict[str, float] = {}
        self.ingestor.subscribers.append(self._forget_frames)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        store: BlobStore | None = None,
        clear_temp: bool = False,
        schema: SchemaMode = "create",
    ) -> Archive:
        """Open (creating on first run). The server clears temp files of interrupted uploads;
        other commands leave them, since a running server may be writing them. Orphan blobs
        that interrupted ingests left are the janitor's (``hub.archive.orphans``), a duty the
        server takes on through a lease.

        ``store``: where the bytes live, built by the composition root (``hub.stores``);
        without one, the plain store of ``settings`` (``blobs.configured``).

        ``schema`` says what may happen to an index at an older revision than this code's
        (``hub.archive.migrations.runner``): the server upgrades it, other commands refuse
        with a ``SchemaError``, reader processes refuse even to create one."""
        from hub.archive.migrations.runner import prepare

        if store is None:
            if settings.storage.encryption_key_file or settings.storage.encryption_key:
                # Opened plain, encrypted objects would be served as ciphertext and new ones
                # stored in the clear: the composition root wraps the store (hub.stores).
                raise ValueError("encryption at rest is configured: open the archive with a store")
            store = plain_store(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.db_url)
        try:
            await prepare(engine, schema)
        except BaseException:
            await engine.dispose()
            raise
        if clear_temp:
            await store.clear_spools(orphans.GRACE_SECONDS)
        return cls(settings, engine, store)

    async def close(self) -> None:
        await self.engine.dispose()
        await self.store.close()

    # -- events -------------------------------------------------------------
    def add_indexed_hook(self, hook: IndexedHook) -> None:
        self.ingestor.hooks.append(hook)

    def subscribe(self, subscriber: Subscriber) -> None:
        self.ingestor.subscribers.append(subscriber)

    def resolve_writer_scopes(self, resolver: ScopeResolver) -> None:
        """How the ingest finds what a sender may read (a Source without a scope)."""
        self.ingestor.scope_of = resolver

    # -- ingest -------------------------------------------------------------
    async def ingest_file(
        self, path: Path, *, source: Source, keep_source: bool = True
    ) -> IngestResult:
        """Ingest a file; without ``keep_source`` it is removed once spooled."""
        loop = asyncio.get_running_loop()
        spool = await loop.run_in_executor(None, self._spool_file, Path(path), keep_source)
        return await self.ingestor.ingest_spool(spool, source)

    async def ingest_bytes(self, data: bytes, *, source: Source) -> IngestResult:
        loop = asyncio.get_running_loop()
        spool = await loop.run_in_executor(None, self._spool_bytes, data)
        return await self.ingestor.ingest_spool(spool, source)

    async def ingest_spool(
        self, spool: Spool, *, source: Source, expect: Expected | None = None
    ) -> IngestResult:
        """Ingest a finished spool of ``self.store`` (streamed uploads), taking ownership."""
        return await self.ingestor.ingest_spool(spool, source, expect)

    def _spool_file(self, path: Path, keep_source: bool) -> Spool:
        spool = self.store.spool()
        try:
            with open(path, "rb") as src:
                while block := src.read(CHUNK):
                    spool.write(block)
            spool.finish()
        except BaseException:
            spool.discard()
            raise
        if not keep_source:
            path.unlink()
        return spool

    def _spool_bytes(self, data: bytes) -> Spool:
        spool = self.store.spool()
        try:
            spool.write(data)
            spool.finish()
        except BaseException:
            spool.discard()
            raise
        return spool

    # -- query --------------------------------------------------------------
    async def search(self, q: query.Query) -> list[dict[str, Any]]:
        return (await self.search_page(q)).rows

    async def search_all(self, q: query.Query) -> list[dict[str, Any]]:
        """Every match, paging through the result cap (for doors that cannot page, as C-FIND)."""
        rows: list[dict[str, Any]] = []
        while True:
            q.offset = len(rows)
            page = await self.search_page(q)
            rows += page.rows
            if not page.truncated or not page.rows:
                return rows

    async def search_page(self, q: query.Query) -> query.QueryResult:
        async with self.engine.connect() as conn:
            return await query.run(conn, q, self.settings.max_query_results)

    async def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        scope: ReadScope = ReadScope.ALL,
    ) -> list[InstanceRef]:
        """The current instances of a study, series or one instance that ``scope`` admits;
        NotFound, as for a UID nothing is stored under, when it admits none."""
        stmt = (
            select(*REF_COLUMNS)
            .select_from(
                instances.join(series, instances.c.series_fk == series.c.id)
                .join(studies, series.c.study_fk == studies.c.id)
                .join(patients, studies.c.patient_fk == patients.c.id)
            )
            .where(instances.c.is_current.is_(True), studies.c.study_uid == study_uid)
            .order_by(*query.clinical_instance_order())
        )
        if series_uid:
            stmt = stmt.where(series.c.series_uid == series_uid)
        if sop_uid:
            stmt = stmt.where(instances.c.sop_uid == sop_uid)
        if (limit := scope.condition()) is not None:
            stmt = stmt.where(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        if not rows:
            raise NotFound(_missing(study_uid, series_uid, sop_uid))
        return [InstanceRef(*row) for row in rows]

    async def instance_column(self, ref: InstanceRef, column: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(select(instances.c[column]).where(instances.c.id == ref.id))
            ).scalar()

    async def metadata_json(self, ref: InstanceRef) -> str:
        """The instance's DICOM JSON, with its patient's corrected demographics."""
        return presented_json(await self.instance_column(ref, "metadata"), ref.corrected)

    async def bulk_ranges(self, ref: InstanceRef) -> dict[str, list]:
        return json.loads(await self.instance_column(ref, "bulk"))

    async def frame_table(
        self, study_uid: str, series_uid: str, sop_uid: str, *, scope: ReadScope = ReadScope.ALL
    ) -> tuple[InstanceRef, FrameTable | None]:
        """The instance and its frame table, from a bounded in-process cache after first use."""
        cached = self.cached_frame_table(study_uid, series_uid, sop_uid, scope=scope)
        if cached is not None:
            return cached
        (ref,) = await self.instances(study_uid, series_uid, sop_uid, scope=scope)
        packed = await self.instance_column(ref, "frames")
        entry = (ref, frametable.unpack(packed) if packed else None)
        self._frames[sop_uid] = entry
        if self._versioned:
            self._cached_at[sop_uid] = time.monotonic()
        if len(self._frames) > self.settings.frame_cache_instances:
            forgotten, _ = self._frames.popitem(last=False)
            self._cached_at.pop(forgotten, None)
        return entry

    def cached_frame_table(
        self, study_uid: str, series_uid: str, sop_uid: str, *, scope: ReadScope = ReadScope.ALL
    ) -> tuple[InstanceRef, FrameTable | None] | None:
        """The cached entry of an instance at this place that ``scope`` admits (no SQL)."""
        entry = self._frames.get(sop_uid)
        if entry is None:
            return None
        ref = entry[0]
        if (
            ref.study_uid != study_uid
            or ref.series_uid != series_uid
            or not scope.admits(ref.actor, ref.modality)
        ):
            return None
        if self._versioned and time.monotonic() - self._cached_at.get(sop_uid, 0.0) > (
            VERSIONED_CACHE_SECONDS
        ):
            self._forget(sop_uid)
            return None
        self._frames.move_to_end(sop_uid)
        return entry

    async def _forget_frames(self, event: Indexed) -> None:
        if event.status == "version":
            self._forget(event.sop_uid)

    def _forget(self, sop_uid: str) -> None:
        self._frames.pop(sop_uid, None)
        self._cached_at.pop(sop_uid, None)


def _missing(study_uid: str, series_uid: str | None, sop_uid: str | None) -> str:
    if sop_uid:
        return f"No instance {sop_uid} in series {series_uid} of study {study_uid}"
    if series_uid:
        return f"No series {series_uid} in study {study_uid}"
    return f"No study {study_uid}"
