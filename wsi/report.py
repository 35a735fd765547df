"""What a conversion made: one record per DICOM instance, and how its frames were produced."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# How an instance's frames were made, from the least to the most change to the source's pixels.
COPIED = "copied"  # the source's compressed tiles, byte for byte (headers merged)
RETILED = "retiled"  # cut out of the source's JPEG in the DCT domain: lossless, nothing decoded
ENCODED = "encoded"  # decoded from a source level of the same size and encoded again
GENERATED = "generated"  # resampled from a larger level and encoded (DERIVED / RESAMPLED)

_WORDS = {
    COPIED: "source tiles copied as stored",
    RETILED: "re-tiled losslessly from the source's JPEG stripes (DCT-domain crop, no decode)",
    ENCODED: "decoded from the source and re-encoded",
    GENERATED: "generated: resampled from a larger level and encoded",
}


@dataclass(frozen=True)
class Instance:
    path: Path
    kind: str  # VOLUME | THUMBNAIL | LABEL | OVERVIEW
    width: int
    height: int
    frames: int
    made: str  # COPIED | RETILED | ENCODED | GENERATED
    # Frames of a COPIED or RETILED level that had to be decoded and encoded (broken tiles).
    mended: int = 0

    def describe(self) -> str:
        text = f"{self.path.name}: {self.kind} {self.width}x{self.height}, {self.frames} frame"
        text += "s" if self.frames != 1 else ""
        text += f", {_WORDS[self.made]}"
        if self.mended:
            text += f" ({self.mended} unreadable tiles decoded and re-encoded)"
        return text
