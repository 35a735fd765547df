"""THE ingest path: parse -> validate -> store bytes -> index -> publish.

Every door (STOW-RS, C-STORE, telehealth capture, slide conversion, import) hands over a
finished spool of the store (``hub.archive.blobs``). Parsing (through ``spool.reader()``)
and storing the bytes (``store.put``, an upload for a remote store) run in parallel for many
objects; then the duplicate check and the index transaction run one object at a time, so that
two copies of a UID cannot race: in a process by the ingest lock, across nodes sharing a
PostgreSQL index by locks on the study and instance UIDs (``hub.archive.uidlocks``). An
object refused at that point, or found to be a duplicate, leaves a stored blob that no row
names: the orphan repair takes it later (``hub.archive.orphans``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.archive import corrected, errors, frametable, merged
from hub.archive.attributes import rows as index_rows
from hub.archive.blobs import BlobStore, Spool, StoreUnavailable
from hub.archive.index import conflicts, instances, patients, series, studies
from hub.archive.known import Known, KnownRow, lookup
from hub.archive.model import Indexed, IngestResult, Source
from hub.archive.parse import ParsedInstance, dumps, parse_part10
from hub.archive.scope import ReadScope
from hub.archive.uidlocks import lock_uids

log = logging.getLogger(__name__)

# Index transactions tried per object: a retry follows a unique-key clash with a row another
# node committed meanwhile, which the next lookup finds.
INDEX_ATTEMPTS = 3

# The per-object count updates, built once (with the SQLite driver, building and caching a
# statement costs about as much as running it).
COUNT_IN_SERIES = (
    update(series)
    .where(series.c.id == bindparam("b_series"))
    .values(num_instances=series.c.num_instances + 1)
)
_earlier = (series.c.first_time == "") | (series.c.first_time > bindparam("b_first_time"))
COUNT_IN_SERIES_AT = COUNT_IN_SERIES.values(
    first_time=case((_earlier, bindparam("b_first_time")), else_=series.c.first_time)
)
COUNT_IN_STUDY = (
    update(studies)
    .where(studies.c.id == bindparam("b_study"))
    .values(num_instances=studies.c.num_instances + 1)
)


@dataclass(frozen=True)
class Expected:
    """What a sender said an object is; C-STORE requests name the SOP class and instance."""

    sop_class_uid: str
    sop_uid: str

    def check(self, p: ParsedInstance) -> None:
        if p.sop_class_uid != self.sop_class_uid:
            mismatch = f"data set SOP Class {p.sop_class_uid} differs from the request"
        elif p.sop_uid != self.sop_uid:
            mismatch = "data set SOP Instance UID differs from the request"
        else:
            return
        raise errors.IngestError(errors.DATASET_DOES_NOT_MATCH_SOP_CLASS, mismatch)


IndexedHook = Callable[[AsyncConnection, Indexed], Awaitable[None]]
Subscriber = Callable[[Indexed], Awaitable[None]]
ScopeResolver = Callable[[Source], Awaitable[ReadScope]]


async def scope_by_actor(source: Source) -> ReadScope:
    """Without accounts to look up: a named sender reads its own objects, the hub's own doors
    (import, conversions without a user) read everything."""
    return ReadScope.ALL if source.actor is None else ReadScope.own(source.actor)


class Ingestor:
    def __init__(self, engine: AsyncEngine, store: BlobStore, duplicate_policy: str) -> None:
        self.engine = engine
        self.store = store
        self.duplicate_policy = duplicate_policy
        self.hooks: list[IndexedHook] = []
        self.subscribers: list[Subscriber] = []
        self.scope_of: ScopeResolver = scope_by_actor  # the security package installs its own
        self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held while an object is checked and its rows written."""
        return self._lock

    async def ingest_spool(
        self, spool: Spool, source: Source, expect: Expected | None = None
    ) -> IngestResult:
        """Take ownership of a spool of ``self.store`` and ingest it.

        ``expect``: what the sender said the object is (a C-STORE request names it); an
        object that is something else is refused.
        """
        loop = asyncio.get_running_loop()
        try:
            sha256, size = await loop.run_in_executor(None, spool.finish)
        except OSError as exc:
            await loop.run_in_executor(None, spool.discard)
            return _storage_failure(exc, "")
        try:
            parsed = await loop.run_in_executor(None, _parse, spool, expect)
        except Exception as exc:
            await loop.run_in_executor(None, spool.discard)
            if isinstance(exc, errors.IngestError):
                return _failed(exc, sha256)
            # a file pydicom chokes on in an unforeseen way
            log.warning("unparseable object from %s: %s", source.door, type(exc).__name__)
            return IngestResult(
                "failed", sha256=sha256, reason=errors.CANNOT_UNDERSTAND, message=str(exc)
            )
        try:
            # Durable before the index names it; outside the lock, so uploads overlap.
            await self.store.put(spool)
        except OSError as exc:
            return _storage_failure(exc, sha256)
        finally:
            await loop.run_in_executor(None, spool.discard)  # no-op once put took it
        return await self._index_parsed(parsed, sha256, size, source)

    async def _index_parsed(
        self, p: ParsedInstance, sha256: str, size: int, source: Source
    ) -> IngestResult:
        result = IngestResult(
            "stored",
            sop_class_uid=p.sop_class_uid,
            sop_instance_uid=p.sop_uid,
            study_uid=p.study_uid,
            series_uid=p.series_uid,
            sha256=sha256,
            warnings=p.warnings,
        )
        built = index_rows(p)
        scope = source.scope if source.scope is not None else await self.scope_of(source)
        async with self._lock:
            for attempt in range(1, INDEX_ATTEMPTS + 1):
                try:
                    indexed = await self._transaction(p, built, sha256, size, source, scope)
                    break
                except IntegrityError as exc:
                    # Another node committed a row this transaction meant to make (a new
                    # patient both name): look again, and this time find it.
                    if attempt == INDEX_ATTEMPTS:
                        log.error("index refused %s: %s", p.sop_uid, exc.orig)
                        return _failed(errors.uid_in_use(), sha256, result)
                except errors.IngestError as exc:
                    return _failed(exc, sha256, result)
                except OSError as exc:
                    return _storage_failure(exc, sha256, result)
        if indexed is None:
            result.status, result.message = "duplicate", "Identical object already stored"
            return result
        record, version = indexed
        if version > 1:
            result.status, result.message = "version", f"Stored as version {version}"
        if p.warnings:
            log.warning(
                "%s from %s stored with warnings: %s", p.sop_uid, source.door, "; ".join(p.warnings)
            )
        for subscriber in self.subscribers:
            try:
                await subscriber(record)
            except Exception:
                log.exception("event subscriber failed")
        return result

    async def _transaction(
        self,
        p: ParsedInstance,
        built: dict[str, dict[str, Any]],
        sha256: str,
        size: int,
        source: Source,
        scope: ReadScope,
    ) -> tuple[Indexed, int] | None:
        """One index transaction for the object: its event and version, or None for an
        identical duplicate."""
        async with self.engine.begin() as conn:
            await lock_uids(conn, p.study_uid, p.sop_uid)
            known = await lookup(conn, p)
            await _check_reach(conn, p, scope, known)
            version = self._version(p, sha256, source, known)
            if version == 0:
                return None
            await self._check_owners(conn, p, built, source, known, scope)
            record = await self._index(conn, p, built, sha256, size, version, source, known, scope)
            for hook in self.hooks:
                await hook(conn, record)
        return record, version

    def _version(self, p: ParsedInstance, sha256: str, source: Source, known: Known) -> int:
        """0 for an identical duplicate, else the version number the new object gets.

        A new version replaces the current one for every reader, so only the sender of the
        current version may send one: from anyone else it would take the object from its owner.
        """
        if known.current is None:
            return 1
        current_sha256, current_version = known.current
        if current_sha256 == sha256:
            return 0
        assert known.current_owner is not None
        if self.duplicate_policy != "version" or known.current_owner[0] != source.actor:
            raise errors.IngestError(
                errors.DUPLICATE_SOP_INSTANCE,
                f"SOP Instance {p.sop_uid} is already stored with different content",
                conflict=True,
            )
        return current_version + 1

    async def _check_owners(
        self,
        conn: AsyncConnection,
        p: ParsedInstance,
        built: dict,
        source: Source,
        known: Known,
        scope: ReadScope,
    ) -> None:
        """Refuse an object whose study belongs to another patient (recording the conflict)
        or whose series belongs to another study. A study of a patient merged into the
        study's patient since is the same patient's."""
        offered = (built["patient"]["patient_id"], built["patient"]["issuer"])
        if (
            known.patient_key is not None
            and known.patient_key != offered
            and known.patient is not None
            and not await merged.merged_into(
                conn, _namespace(built["patient"], scope), offered, known.patient[0]
            )
        ):
            async with self.engine.begin() as wconn:
                await wconn.execute(
                    insert(conflicts).values(
                        study_uid=p.study_uid,
                        sop_uid=p.sop_uid,
                        kept_patient_id=known.patient_key[0],
                        offered_patient_id=offered[0],
                        door=source.door,
                        at=time.time(),
                    )
                )
            raise errors.IngestError(
                errors.PROCESSING_FAILURE,
                f"Study {p.study_uid} belongs to another patient; the conflict is recorded",
                conflict=True,
            )
        if known.series_study_uid is not None and known.series_study_uid != p.study_uid:
            raise errors.uid_in_use()  # the series belongs to another study

    async def _index(
        self,
        conn: AsyncConnection,
        p: ParsedInstance,
        built: dict[str, dict[str, Any]],
        sha256: str,
        size: int,
        version: int,
        source: Source,
        known: Known,
        scope: ReadScope,
    ) -> Indexed:
        patient = {**built["patient"], "namespace": _namespace(built["patient"], scope)}
        patient_fk, _ = await _upsert(
            conn,
            patients,
            (patients.c.namespace == patient["namespace"])
            & (patients.c.patient_id == patient["patient_id"])
            & (patients.c.issuer == patient["issuer"]),
            patient,
            known.patient,  # an existing study keeps its patient
        )
        study = built["study"]
        if known.study is None:
            patient_fk, correction = await merged.surviving(conn, patient_fk)
            if correction:
                study = {**study, **corrected.study_columns(study["attrs"], correction)}
        study_fk, _ = await _upsert(
            conn,
            studies,
            studies.c.study_uid == p.study_uid,
            {**study, "patient_fk": patient_fk, "updated_at": time.time()},
            known.study,
        )
        series_fk, new_series = await _upsert(
            conn,
            series,
            series.c.series_uid == p.series_uid,
            {**built["series"], "study_fk": study_fk},
            known.series,
        )
        if version > 1:
            await conn.execute(
                update(instances)
                .where(instances.c.sop_uid == p.sop_uid, instances.c.is_current.is_(True))
                .values(is_current=False)
            )
        inst = built["instance"]
        await conn.execute(
            insert(instances),  # values as parameters: one cached statement for every object
            {
                **inst,
                "attrs": dumps(inst["attrs"]),
                "shared": dumps(inst["shared"]),
                "version": version,
                "is_current": True,
                "series_fk": series_fk,
                "sha256": sha256,
                "size": size,
                "metadata": dumps(p.json),
                "frames": frametable.pack(p.frames) if p.frames is not None else None,
                "bulk": json.dumps({k: [b.offset, b.length, b.vr] for k, b in p.bulk.items()}),
                "received_at": time.time(),
                "door": source.door,
                "actor": source.actor,
            },
        )
        if version == 1:
            await _recount(conn, study_fk, series_fk, built["series"], new_series)
        return Indexed(
            sop_uid=p.sop_uid,
            sop_class_uid=p.sop_class_uid,
            study_uid=p.study_uid,
            series_uid=p.series_uid,
            modality=built["series"]["modality"],
            sha256=sha256,
            size=size,
            version=version,
            source=source,
            patient_id=built["patient"]["patient_id"],
            accession=built["study"]["accession"],
            warnings=tuple(p.warnings),
        )


async def _check_reach(
    conn: AsyncConnection, p: ParsedInstance, scope: ReadScope, known: Known
) -> None:
    """A write may only add to what its sender may read: a study, series or instance UID that
    names objects beyond the sender's scope is refused like any other UID clash."""
    if scope.everything:
        return
    if known.current_owner is not None and not scope.admits(*known.current_owner):
        raise errors.uid_in_use()
    if known.study is not None and not await _reaches(
        conn, scope, studies.c.study_uid == p.study_uid
    ):
        raise errors.uid_in_use()
    if known.series is not None and not await _reaches(
        conn, scope, series.c.series_uid == p.series_uid
    ):
        raise errors.uid_in_use()


async def _reaches(conn: AsyncConnection, scope: ReadScope, where: ColumnElement[bool]) -> bool:
    """Whether the scope admits any current instance under ``where``."""
    condition = scope.condition()
    visible = (
        select(instances.c.id)
        .select_from(
            instances.join(series, instances.c.series_fk == series.c.id).join(
                studies, series.c.study_fk == studies.c.id
            )
        )
        .where(instances.c.is_current.is_(True), where)
    )
    if condition is not None:
        visible = visible.where(condition)
    return bool((await conn.execute(select(exists(visible)))).scalar())


def _namespace(patient: dict[str, Any], scope: ReadScope) -> str:
    """Where a new study's patient is looked up: an issuer's IDs are shared, an ID without an
    issuer stays with its sender (the owner of a clinic's objects)."""
    return "" if patient["issuer"] else scope.owner or ""


def _parse(spool: Spool, expect: Expected | None) -> ParsedInstance:
    with spool.reader() as f:
        parsed = parse_part10(f)
    if expect is not None:
        expect.check(parsed)
    return parsed


def _storage_failure(exc: OSError, sha256: str, base: IngestResult | None = None) -> IngestResult:
    log.error("storage failure: %s", exc)
    if isinstance(exc, StoreUnavailable):  # the detail (endpoint, bucket) is for the log
        wait = max(1, round(exc.retry_after))
        message = f"Storage failure: the object store is unavailable; retry in {wait} s"
    else:
        message = f"Storage failure: {exc.strerror or exc}"
    result = _failed(errors.IngestError(errors.OUT_OF_RESOURCES, message), sha256, base)
    if isinstance(exc, StoreUnavailable):
        result.retry_after = exc.retry_after
    return result


async def _upsert(
    conn: AsyncConnection,
    table: Any,
    where: Any,
    values: dict[str, Any],
    known: KnownRow | None = None,
) -> tuple[int, bool]:
    """Insert a row, or complete an existing one: attributes it lacks are added, none replaced.

    ``known``: the existing row's (id, attrs) when already read in this transaction.
    """
    row = known
    if row is None:
        found = (await conn.execute(select(table.c.id, table.c.attrs).where(where))).first()
        row = None if found is None else (found.id, found.attrs)
    if row is None:
        data = {**values, "attrs": dumps(values["attrs"])}
        return (await conn.execute(insert(table).values(**data))).inserted_primary_key[0], True
    row_id, attrs = row
    kept = json.loads(attrs)
    merged = {**values["attrs"], **kept}
    if merged != kept:
        await conn.execute(update(table).where(table.c.id == row_id).values(attrs=dumps(merged)))
    return row_id, False


async def _recount(
    conn: AsyncConnection, study_fk: int, series_fk: int, series_row: dict, new_series: bool
) -> None:
    """Keep the per-level counts and the study's modalities current for one new instance."""
    first_time = series_row["first_time"]
    if first_time:
        await conn.execute(COUNT_IN_SERIES_AT, {"b_series": series_fk, "b_first_time": first_time})
    else:
        await conn.execute(COUNT_IN_SERIES, {"b_series": series_fk})
    if not new_series:
        await conn.execute(COUNT_IN_STUDY, {"b_study": study_fk})
        return
    current = (
        await conn.execute(select(studies.c.modalities).where(studies.c.id == study_fk))
    ).scalar() or ""
    modalities = {m for m in current.split("\\") if m} | {series_row["modality"]} - {""}
    await conn.execute(
        update(studies)
        .where(studies.c.id == study_fk)
        .values(
            num_instances=studies.c.num_instances + 1,
            num_series=studies.c.num_series + 1,
            modalities="\\".join(sorted(modalities)),
        )
    )


def _failed(exc: errors.IngestError, sha256: str, base: IngestResult | None = None) -> IngestResult:
    result = base or IngestResult("failed")
    result.status = "failed"
    result.sha256 = sha256
    result.reason = exc.reason
    result.message = exc.message
    result.conflict = exc.conflict
    return result
