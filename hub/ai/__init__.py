"""AI analysis of slides: models (``model``, built-ins in ``detectors``), their results as DICOM
annotations and TID 1500 reports (``objects``) stored through the one ingest path
(``analyses``), and the chain of reports that replace one another (``provenance``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from hub.ai.model import Model


def builtin_models() -> dict[str, Model]:
    from hub.ai.detectors import NucleiDetector, TissueDetector

    return {m.name: m for m in (TissueDetector(), NucleiDetector())}


def setup(app: web.Application, models: Mapping[str, Model] | None = None) -> None:
    """The AI routes over the app's archive, running ``models`` (the built-ins by default)."""
    from hub.ai.analyses import Analyser
    from hub.ai.routes import ANALYSER_KEY, add_routes
    from hub.app_keys import ARCHIVE_KEY

    app[ANALYSER_KEY] = Analyser(app[ARCHIVE_KEY], builtin_models() if models is None else models)
    add_routes(app)
