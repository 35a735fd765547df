"""Plain data passed between the archive core and its doors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hub.archive.scope import ReadScope

IngestStatus = Literal["stored", "duplicate", "version", "failed"]


@dataclass(frozen=True)
class Source:
    """Who or what delivered an object: recorded with it and in the audit trail.

    ``scope``: what the sender may read. A write may only add to studies, series and instances
    within it. None: the ingest asks its scope resolver (by ``actor``).
    """

    door: str  # stow, dimse, telehealth, wsi, import
    actor: str | None = None
    address: str | None = None
    calling_ae: str | None = None
    scope: ReadScope | None = None


@dataclass(frozen=True)
class Indexed:
    """The ingest event: one object stored and indexed, published to the archive's hooks (inside
    the index transaction) and subscribers (after the commit)."""

    sop_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    modality: str
    sha256: str
    size: int
    version: int
    source: Source
    patient_id: str
    accession: str
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["stored", "version"]:
        """ "version" when the object replaced an earlier version of its SOP instance."""
        return "version" if self.version > 1 else "stored"


@dataclass
class IngestResult:
    status: IngestStatus
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sha256: str = ""
    reason: int | None = None
    message: str = ""
    conflict: bool = False
    warnings: list[str] = field(default_factory=list)  # stored, but the object is incomplete
    retry_after: float | None = None  # failed because the store is unavailable: retry then

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class FrameTable:
    """Byte ranges of each frame inside the stored file.

    For a frame split over several fragments the ranges are listed in order and served
    concatenated; most instances have exactly one range per frame.
    """

    ranges: tuple[tuple[tuple[int, int], ...], ...]
    encapsulated: bool

    def __len__(self) -> int:
        return len(self.ranges)


@dataclass
class InstanceRef:
    """Everything a door needs to serve an instance without parsing it."""

    id: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    sha256: str
    size: int
    number_of_frames: int
    patient_id: str = ""
    rows: int | None = None
    columns: int | None = None
    image_type: str = ""
    actor: str | None = None
    modality: str = ""
    corrected: str = ""  # the patient's corrected demographics (``hub.archive.corrected``)
    extra: dict = field(default_factory=dict)
