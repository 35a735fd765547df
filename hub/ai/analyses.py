"""Running a model on a stored slide: read it, analyse it off the event loop, and store what it
found as two DICOM objects through the archive's one ingest path.

Nothing is stored until the model's result has been checked and both objects built, so a model
that fails or answers garbage leaves the study as it was. A re-analysis by the same model
(whatever its version) adds to the same two series; its report names the one it replaces.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom import Dataset, dcmread

from hub.ai import objects, slides
from hub.ai.model import AnalysisError, Model, Result
from hub.archive import Archive, InstanceRef, NotFound, ReadScope, Source


class UnknownModel(AnalysisError):
    status = 404


class UnknownImage(AnalysisError):
    status = 404


class NotASlide(AnalysisError):
    status = 400


@dataclass(frozen=True)
class Analysis:
    """What one analysis stored."""

    model: str
    version: str
    study_uid: str
    image_uid: str  # the slide's level-0 instance
    annotations_uid: str
    report_uid: str
    replaces: str | None  # the report this one supersedes
    measurements: Mapping[str, float]


class Analyser:
    """Runs the hub's models (injected by the composition root) on slides of an archive."""

    def __init__(self, archive: Archive, models: Mapping[str, Model]) -> None:
        self.archive = archive
        self.models = dict(models)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def run(
        self, study: str, series: str, image: str, model_name: str, source: Source
    ) -> Analysis:
        model = self.models.get(model_name)
        if model is None:
            raise UnknownModel(
                f"no model {model_name!r}; the hub runs {', '.join(sorted(self.models))}"
            )
        levels = await self._levels(study, series, image, source)
        async with slides.materialized(self.archive, levels) as paths:
            level0, result = await asyncio.to_thread(slides.analysed, paths, model)
        # One analysis at a time per image and model, so that each report replaces the last.
        async with self._locks.setdefault((level0.SOPInstanceUID, model.name), asyncio.Lock()):
            return await self._store(level0, model, result, source)

    async def _levels(
        self, study: str, series: str, image: str, source: Source
    ) -> list[InstanceRef]:
        scope = source.scope or ReadScope.ALL
        try:
            (ref,) = await self.archive.instances(study, series, image, scope=scope)
            levels = slides.volumes(await self.archive.instances(study, series, scope=scope))
        except NotFound as exc:
            raise UnknownImage(str(exc)) from None
        if ref.sop_class_uid != slides.VL_WSI or ref not in levels:
            raise NotASlide(
                "the image must be a level (VOLUME) of a VL Whole Slide Microscopy slide"
            )
        return levels

    async def _store(
        self, image: Dataset, model: Model, result: Result, source: Source
    ) -> Analysis:
        ann_series = objects.series_uid(image.SOPInstanceUID, model, "ANN")
        sr_series = objects.series_uid(image.SOPInstanceUID, model, "SR")
        earlier = await self._series(image.StudyInstanceUID, sr_series)
        replaces = await self._read(earlier[-1]) if earlier else None
        number = len(earlier) + 1
        ann, sr = await asyncio.to_thread(
            _encoded, image, model, result, ann_series, sr_series, number, replaces
        )
        stored = [await self._ingest(data, source) for data in (ann, sr)]
        return Analysis(
            model=model.name,
            version=model.version,
            study_uid=image.StudyInstanceUID,
            image_uid=image.SOPInstanceUID,
            annotations_uid=stored[0],
            report_uid=stored[1],
            replaces=replaces.SOPInstanceUID if replaces is not None else None,
            measurements=dict(result.measurements),
        )

    async def _series(self, study: str, series: str) -> list[InstanceRef]:
        """The instances of one of the hub's AI series, oldest first (empty before the first)."""
        try:
            refs = await self.archive.instances(study, series)
        except NotFound:
            return []
        return sorted(refs, key=lambda r: r.id)

    async def _read(self, ref: InstanceRef) -> Dataset:
        async with self.archive.store.materialize(ref.sha256) as path:
            return await asyncio.to_thread(_dataset, path)

    async def _ingest(self, data: bytes, source: Source) -> str:
        result = await self.archive.ingest_bytes(data, source=source)
        if not result.ok:
            raise AnalysisError(f"the result was not stored: {result.message}")
        return result.sop_instance_uid


def _dataset(path) -> Dataset:
    with open(path, "rb") as f:  # a materialized path is opened, never resolved
        return dcmread(f)


def _encoded(
    image: Dataset,
    model: Model,
    result: Result,
    ann_series: str,
    sr_series: str,
    number: int,
    replaces: Dataset | None,
) -> tuple[bytes, bytes]:
    """Both objects, built and encoded before either is stored."""
    try:
        ann = objects.annotations(image, model, result, ann_series, number)
        sr = objects.measurement_report(image, model, result, sr_series, number, replaces, ann)
    except (ValueError, TypeError) as exc:  # highdicom's checks of what the model found
        raise AnalysisError(
            f"the result of {model.name} {model.version} cannot be stored: {exc}"
        ) from exc
    return _bytes(ann), _bytes(sr)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
