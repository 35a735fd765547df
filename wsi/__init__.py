"""Vendor whole-slide image -> DICOM VL Whole Slide Microscopy pyramid (pure library, no HTTP).

Imports stay light here: the heavy modules (pydicom, tifffile, openslide, imagecodecs) load only
when a conversion starts, so the command line starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wsi.errors import ConversionError
from wsi.options import ConvertOptions, SlideIds
from wsi.report import Instance

__all__ = ["ConversionError", "ConvertOptions", "Instance", "SlideIds", "convert_slide"]


def convert_slide(
    src: Path,
    out_dir: Path,
    ids: SlideIds = SlideIds(),
    options: ConvertOptions = ConvertOptions(),
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    on_instance: Callable[[Instance], None] | None = None,
) -> list[Path]:
    """Convert ``src`` into one DICOM file per pyramid level (+ label/overview/thumbnail).

    Returns the written paths. Raises ConversionError; on failure ``out_dir`` holds no new files.
    ``progress(frames_done, frames_total)`` may be called from a helper thread of the conversion.
    ``warn(message)`` hears each assumption the output states (assumed pixel spacing, shifted
    signed samples, the Z plane and time point chosen), before any pixels are converted.
    ``on_instance(instance)`` is called once per instance when it is in ``out_dir``, with how it
    was made (also from a helper thread). With ``options.progressive`` that is as soon as each
    one is written, and the instances handed over stay when a later part fails: they are the
    caller's from then on.
    """
    from wsi.headers import Headers

    headers = Headers()  # first: it may start loading pydicom in a helper process right away
    try:
        from wsi.convert import convert

        return convert(Path(src), Path(out_dir), ids, options, progress, headers, warn, on_instance)
    finally:
        headers.close()
