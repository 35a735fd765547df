"""Slide annotations: what a pathologist draws in the viewer, kept as DICOM Microscopy Bulk Simple
Annotations (highdicom) that go through the one ingest path and are served by DICOMweb like any
other instance, so other viewers (dicom-microscopy-viewer) show them too."""

from hub.annotations.routes import setup

__all__ = ["setup"]
