"""Level-0 pixel spacing of a slide, and the stated assumption when the source records none."""

from __future__ import annotations

from dataclasses import dataclass

from wsi.sources.model import SlideInfo


@dataclass(frozen=True)
class Spacing:
    """Level-0 micrometres per pixel and how they were obtained."""

    x: float
    y: float
    note: str | None  # set when assumed, written to ImageComments


def level0_spacing(slide: SlideInfo, fallback_mpp: float) -> Spacing:
    if slide.mpp is not None:
        return Spacing(slide.mpp[0], slide.mpp[1], None)
    if slide.objective_power:
        mpp = 10.0 / slide.objective_power
        note = (
            f"Pixel spacing not recorded by the scanner; assumed {mpp:g} um/pixel "
            f"from objective power {slide.objective_power:g}x"
        )
        return Spacing(mpp, mpp, note)
    note = f"Pixel spacing not recorded by the scanner; assumed {fallback_mpp:g} um/pixel"
    return Spacing(fallback_mpp, fallback_mpp, note)


def slide_notes(slide: SlideInfo, spacing: Spacing) -> list[str]:
    """What the output states about assumptions made for this source: ImageComments, and the
    warnings a conversion reports."""
    return ([spacing.note] if spacing.note else []) + slide.notes
