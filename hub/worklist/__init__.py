"""Modality Worklist: scheduled procedure steps, their REST API and CLI, and the DICOM views
(MWL answers in hub.dimse, image attributes for captures and uploads)."""

from hub.worklist.dataset import image_attributes, worklist_dataset
from hub.worklist.model import WorklistItem, get_item

__all__ = ["WorklistItem", "get_item", "image_attributes", "worklist_dataset"]
