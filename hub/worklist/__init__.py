"""Modality Worklist: scheduled procedure steps, their REST API and CLI, and the DICOM views
(MWL answers in hub.dimse, image attributes for captures and uploads).

The names below load on first use (PEP 562): the command line's ``hub.worklist.cli`` builds
its parser without pydicom and the database layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.lazy import lazy_exports

if TYPE_CHECKING:
    from hub.worklist.dataset import image_attributes, worklist_dataset
    from hub.worklist.model import WorklistItem, get_item

_HOMES = {
    "image_attributes": "dataset",
    "worklist_dataset": "dataset",
    "WorklistItem": "model",
    "get_item": "model",
}

__all__ = ["WorklistItem", "get_item", "image_attributes", "worklist_dataset"]

__getattr__ = lazy_exports(__name__, _HOMES)
