"""Checks an object must pass before it is stored: the attributes the doors rely on to serve it.

This is not a full IOD validator; it refuses objects that would be stored but could not be
served or displayed correctly (for instance a slide level a viewer cannot place), and warns of
missing attributes that viewers expect but the archive can do without.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from hub.archive import errors

VL_WHOLE_SLIDE = "1.2.840.10008.5.1.4.1.1.77.1.6"
IMAGE_PIXEL = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")
WSI_TYPE1 = (
    "ImageType",
    "DimensionOrganizationType",
    "TotalPixelMatrixColumns",
    "TotalPixelMatrixRows",
    "NumberOfFrames",
)
WSI_IMAGE_FLAVORS = {"VOLUME", "LABEL", "OVERVIEW", "THUMBNAIL"}


# Type 1 attributes whose absence is stored with a warning rather than refused: senders omit
# them (secondary captures, old converters) and the object is still worth keeping.
WARN_TYPE1 = (("Modality", "General Series"),)


def check_required(ds: Dataset, has_pixels: bool) -> list[str]:
    """Raises IngestError for an object that cannot be served; returns the warnings of one
    that can."""
    if has_pixels:
        _require(ds, IMAGE_PIXEL, errors.CANNOT_UNDERSTAND, "Image Pixel")
    elif all(ds.get(k) for k in ("Rows", "Columns", "BitsAllocated")):
        raise errors.IngestError(
            errors.CANNOT_UNDERSTAND, "Image attributes present but no Pixel Data: truncated file?"
        )
    if str(ds.get("SOPClassUID", "")) == VL_WHOLE_SLIDE:
        _require(
            ds, WSI_TYPE1, errors.DATASET_DOES_NOT_MATCH_SOP_CLASS, "VL Whole Slide Microscopy"
        )
        image_type = list(ds.ImageType)
        if len(image_type) < 3 or image_type[2] not in WSI_IMAGE_FLAVORS:
            raise errors.IngestError(
                errors.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"ImageType value 3 must be one of {sorted(WSI_IMAGE_FLAVORS)}: {image_type}",
            )
    return [
        f"{keyword} (Type 1, {module} Module) is missing"
        for keyword, module in WARN_TYPE1
        if ds.get(keyword) in (None, "")
    ]


def _require(ds: Dataset, keywords: tuple[str, ...], reason: int, module: str) -> None:
    missing = [k for k in keywords if ds.get(k) in (None, "")]
    if missing:
        raise errors.IngestError(reason, f"{module}: missing required {', '.join(missing)}")
