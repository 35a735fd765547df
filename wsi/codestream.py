"""Header surgery on JPEG and JPEG 2000 tile streams for raw passthrough.

Hand-written on purpose: imagecodecs, pylibjpeg and Pillow decode and encode whole images but none
of them rewrites marker segments without touching the entropy-coded data, which is what lossless
passthrough needs (merge the TIFF JPEGTables into each abbreviated tile, add an Adobe APP14 marker
so every decoder agrees the components are RGB, read the JPEG 2000 COD marker for ICT/RCT).
"""

from __future__ import annotations

from dataclasses import dataclass

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
# Adobe APP14, version 100, no flags, transform 0 = components are RGB, not YCbCr.
ADOBE_APP14_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class StreamError(ValueError):
    """The bytes are not a well-formed JPEG / JPEG 2000 stream."""


@dataclass(frozen=True)
class JpegHeader:
    sof_marker: int | None
    component_ids: tuple[int, ...]
    sampling: tuple[int, ...]  # (h << 4 | v) per component
    adobe_transform: int | None  # APP14 transform flag if present
    jfif: bool
    has_sos: bool
    end: int  # offset just past the SOS segment (or the EOI of a tables-only stream)


def read_jpeg_header(stream: bytes) -> JpegHeader:
    """Walk the marker segments up to SOS (or EOI for a tables-only stream)."""
    if stream[:2] != SOI:
        raise StreamError("no JPEG start-of-image marker")
    pos, end = 2, len(stream)
    sof = None
    ids: tuple[int, ...] = ()
    sampling: tuple[int, ...] = ()
    adobe = None
    jfif = False
    while pos + 1 < end:
        if stream[pos] != 0xFF:
            raise StreamError(f"expected a JPEG marker at byte {pos}")
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return JpegHeader(sof, ids, sampling, adobe, jfif, has_sos=False, end=pos + 2)
        if marker in _STANDALONE:
            pos += 2
            continue
        if pos + 4 > end:
            raise StreamError("JPEG marker segment truncated")
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        body = stream[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            raise StreamError(f"JPEG marker segment at byte {pos} is truncated")
        if marker in _SOF_MARKERS:
            if len(body) < 6 or len(body) < 6 + 3 * body[5]:
                raise StreamError("JPEG frame header is truncated")
            n = body[5]
            sof = marker
            ids = tuple(body[6 + 3 * i] for i in range(n))
            sampling = tuple(body[7 + 3 * i] for i in range(n))
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        elif marker == 0xE0 and body[:5] == b"JFIF\x00":
            jfif = True
        elif marker == 0xDA:
            return JpegHeader(sof, ids, sampling, adobe, jfif, has_sos=True, end=pos + 2 + length)
        pos += 2 + length
    raise StreamError("JPEG stream ends before its scan")


def tables_segments(jpegtables: bytes | None) -> bytes:
    """The DQT/DHT segments of a TIFF JPEGTables stream without its SOI/EOI."""
    if not jpegtables:
        return b""
    if jpegtables[:2] != SOI:
        raise StreamError("JPEGTables does not start with SOI")
    body = jpegtables[2:]
    return body[:-2] if body.endswith(EOI) else body


def jpeg_is_rgb(header: JpegHeader, tiff_photometric_rgb: bool) -> bool:
    """Whether the 3 components hold RGB (not YCbCr) samples.

    Order of evidence: an Adobe APP14 transform flag, a JFIF marker (always YCbCr), component ids
    'R','G','B', component ids 1,2,3 (the JFIF convention, YCbCr); otherwise the TIFF
    PhotometricInterpretation decides (Aperio writes RGB-coded tiles with ids 0,1,2 and no marker).
    """
    if header.adobe_transform is not None:
        return header.adobe_transform == 0
    if header.jfif:
        return False
    if header.component_ids == (0x52, 0x47, 0x42):
        return True
    if header.component_ids == (1, 2, 3):
        return False
    return tiff_photometric_rgb


def jpeg_frame_prefix(jpegtables: bytes | None, header: JpegHeader, rgb: bool) -> bytes:
    """What replaces a tile's SOI: SOI, APP14 when RGB needs stating, then the shared tables."""
    app14 = ADOBE_APP14_RGB if rgb and header.adobe_transform is None else b""
    return SOI + app14 + tables_segments(jpegtables)


class JpegTileCheck:
    """Cheap structural check of abbreviated JPEG tiles: SOI, a frame header, a scan, EOI.

    Fast path: a level's tiles nearly always share their header bytes up to the scan (same SOF,
    same SOS), so a tile that starts with the last good tile's header and ends in EOI needs no
    marker walk. Accepts bytes or memoryview.
    """

    def __init__(self) -> None:
        self._header: bytes | None = None  # of the last tile that passed the full walk

    def __call__(self, tile: bytes | memoryview) -> bool:
        header = self._header
        if (
            header is not None
            and len(tile) > len(header)
            and tile[: len(header)] == header
            and tile[-2:] == EOI
        ):
            return True
        if len(tile) < 8 or tile[-2:] != EOI:
            return False
        try:
            parsed = read_jpeg_header(tile)
        except StreamError:
            return False
        if parsed.has_sos and parsed.sof_marker is not None:
            self._header = bytes(tile[: parsed.end])
            return True
        return False


def j2k_tile_complete(tile: bytes | memoryview) -> bool:
    """A JPEG 2000 codestream from SOC/SIZ to EOC."""
    return tile[:4] == b"\xff\x4f\xff\x51" and tile[-2:] == b"\xff\xd9"


@dataclass(frozen=True)
class J2kHeader:
    components: int
    mct: bool
    reversible: bool  # 5-3 wavelet (lossless-capable) vs 9-7


def j2k_codestream(data: bytes) -> bytes:
    """The raw codestream: DICOM wants it bare, so unwrap a JP2 file's jp2c box if present."""
    if data[:4] == b"\xff\x4f\xff\x51":
        return data
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        box = data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = len(data) - pos
        if box == b"jp2c":
            return data[pos + header : pos + size]
        if size < header:
            break
        pos += size
    raise StreamError("not a JPEG 2000 codestream or JP2 file")


def read_j2k_header(codestream: bytes) -> J2kHeader:
    if codestream[:4] != b"\xff\x4f\xff\x51":
        raise StreamError("JPEG 2000 codestream lacks SOC/SIZ")
    siz_len = int.from_bytes(codestream[4:6], "big")
    components = int.from_bytes(codestream[40:42], "big")
    pos = 4 + siz_len
    while pos + 4 <= len(codestream):
        marker = codestream[pos : pos + 2]
        length = int.from_bytes(codestream[pos + 2 : pos + 4], "big")
        if marker == b"\xff\x52":  # COD
            body = codestream[pos + 4 : pos + 2 + length]
            return J2kHeader(components, mct=body[4] == 1, reversible=body[9] == 1)
        if marker == b"\xff\x90":  # first tile-part: COD must have come before
            break
        pos += 2 + length
    raise StreamError("JPEG 2000 codestream has no COD marker")
