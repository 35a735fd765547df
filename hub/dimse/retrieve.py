"""C-MOVE and C-GET SCP: stored objects sent back as they were received.

The identifier selects instances with the same engine as C-FIND (unique keys at the requested
level); each match is yielded as a StoredInstance so the C-STORE sub-operation streams the
stored file when the peer accepts its transfer syntax (see hub.dimse.scu).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pynetdicom import build_context
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification
from sqlalchemy.exc import SQLAlchemyError

from hub.archive import NotFound
from hub.archive import errors as codes
from hub.archive.query import Query, QueryError
from hub.dimse import audit
from hub.dimse.access import AccessPolicy, NotAuthorized
from hub.dimse.bridge import ArchiveUnavailable, LoopBridge
from hub.dimse.config import MoveDestination
from hub.dimse.find import IdentifierError, scoped_query
from hub.dimse.peers import PeerSource
from hub.dimse.scu import NoPresentationContext, StoredInstance, install_exact_sender, plan_contexts
from hub.dimse.status import CANCEL, PENDING, status
from hub.security.accounts import Principal

log = logging.getLogger(__name__)

UNIQUE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"


def _value(row: dict[str, Any], tag: str) -> str:
    return str(row.get(tag, {}).get("Value", [""])[0])


class Selector:
    """Identifier -> the stored instances the caller may read, in clinical order."""

    def __init__(self, archive, bridge: LoopBridge, policy: AccessPolicy) -> None:
        self.archive = archive
        self.bridge = bridge
        self.policy = policy

    def check(self, event: Event, service: str) -> Principal:
        return self.policy.authorize(event, service)

    def audit(self, event: Event, who: Principal, action: str, items: list, detail: dict) -> None:
        asked = event.identifier.get("StudyInstanceUID")
        studies = [str(asked)] if asked else []
        detail = {**detail, "count": len(items)}
        audit.record(self.archive, self.bridge, event, who, action, studies, detail)

    def select(self, identifier: Dataset, model: str, who: Principal) -> list[StoredInstance]:
        query = scoped_query(identifier, model, who)
        keys = {k: v for k, v in query.keys.items() if k in UNIQUE_KEYS}
        if not keys:
            raise IdentifierError(
                codes.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"a retrieve needs a unique key ({', '.join(UNIQUE_KEYS)})",
            )
        # Instances outside the caller's read scope are not selected: for it they do not exist.
        instance_query = Query(level="INSTANCE", keys=keys, scope=query.scope)
        rows = self.bridge.call(self.archive.search_all(instance_query))
        wanted = {_value(r, SOP) for r in rows}
        studies = dict.fromkeys(_value(r, STUDY) for r in rows)
        found: list[StoredInstance] = []
        for study_uid in studies:
            try:
                refs = self.bridge.call(self.archive.instances(study_uid, scope=query.scope))
            except NotFound:
                continue  # deleted between the query and now
            found += [
                StoredInstance(
                    partial(self._materialized, ref.sha256),
                    ref.sop_class_uid,
                    ref.sop_instance_uid,
                    ref.transfer_syntax_uid,
                )
                for ref in refs
                if ref.sop_instance_uid in wanted
            ]
        return found

    @contextmanager
    def _materialized(self, sha256: str) -> Iterator[Path]:
        """A file of the stored bytes while pynetdicom sends it (this runs in its thread)."""
        opened = self.archive.store.materialize(sha256)
        path = self.bridge.call(opened.__aenter__())
        try:
            yield path
        except BaseException as exc:
            if not self.bridge.call(opened.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.bridge.call(opened.__aexit__(None, None, None))


def _failure(exc: Exception) -> Dataset:
    if isinstance(exc, NotAuthorized):
        return exc.status
    if isinstance(exc, IdentifierError):
        return status(exc.code, str(exc))
    if isinstance(exc, QueryError):
        return status(codes.CANNOT_UNDERSTAND, str(exc))
    if isinstance(exc, ArchiveUnavailable | NoPresentationContext):
        return status(codes.OUT_OF_RESOURCES, str(exc))
    log.exception("retrieve failed", exc_info=exc)
    return status(codes.CANNOT_UNDERSTAND, f"cannot understand: {exc}")


class MoveHandler:
    """C-MOVE to the peers as the index has them at each move (hub.dimse.peers)."""

    def __init__(self, selector: Selector, peers: PeerSource) -> None:
        self.selector = selector
        self.peers = peers

    def destinations(self) -> dict[str, MoveDestination]:
        try:
            return self.selector.bridge.call(self.peers.current())
        except (ArchiveUnavailable, SQLAlchemyError) as exc:
            log.warning("C-MOVE: peers not read again (%s), the last ones read count", exc)
            return self.peers.value

    def __call__(self, event: Event) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        known = self.destinations().get(destination)
        if known is None:
            log.info("C-MOVE to unknown destination %r", destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        where = (known.host, known.port)
        tls = {"tls_args": known.tls.pynetdicom_args(known.host)} if known.tls else {}
        try:
            who = self.selector.check(event, "move")
            items = self.selector.select(event.identifier, event.request.AffectedSOPClassUID, who)
            contexts = plan_contexts((i.SOPClassUID, i.stored_syntax) for i in items)
        except Exception as exc:
            # pynetdicom takes a status only after associating with the destination.
            yield (*where, {"contexts": [build_context(Verification)], **tls})
            yield 1
            yield _failure(exc), None
            return
        self.selector.audit(event, who, "dimse.move", items, {"destination": destination})
        yield (*where, {"contexts": contexts or None, **tls})
        yield len(items)
        for item in items:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, item


class GetHandler:
    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def __call__(self, event: Event) -> Iterator[Any]:
        install_exact_sender(event.assoc)
        try:
            who = self.selector.check(event, "get")
            items = self.selector.select(event.identifier, event.request.AffectedSOPClassUID, who)
        except Exception as exc:
            yield 1
            yield _failure(exc), None
            return
        self.selector.audit(event, who, "dimse.get", items, {})
        yield len(items)
        for item in items:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, item
