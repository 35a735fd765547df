"""The streaming Part-10 writer: offset tables that pydicom and wsidicom can use."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import generate_frames, get_frame

from wsi.metadata import SlideDatasets, Spacing, header_bytes
from wsi.options import SlideIds
from wsi.sources.model import SlideInfo, SourceLevel
from wsi.writer import RATIO_PLACEHOLDER, FrameWriter


def _header(tmp_path, frames: int, history) -> bytes:
    slide = SlideInfo(
        path=tmp_path / "synthetic.tiff",
        reader="tiff",
        vendor="test",
        levels=[SourceLevel(0, 64 * frames, 64, 1.0, 64, 64)],
    )
    builder = SlideDatasets(slide, SlideIds(patient_id="P"), Spacing(0.5, 0.5, None))
    ds = builder.instance(
        kind="VOLUME",
        derived=False,
        number=1,
        width=64 * frames,
        height=64,
        tile_width=64,
        tile_height=64,
        frames=frames,
        photometric="YBR_FULL_422",
        lossy_history=history,
    )
    return header_bytes(ds, "1.2.840.10008.1.2.4.50")


def _tiles(n: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    return [
        imagecodecs.jpeg8_encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), level=80)
        for _ in range(n)
    ]


def test_basic_offset_table_and_ratio(tmp_path):
    tiles = _tiles(5)
    path = tmp_path / "bot.dcm"
    writer = FrameWriter(
        path,
        _header(tmp_path, 5, [("ISO_10918_1", RATIO_PLACEHOLDER)]),
        5,
        large=False,
    )
    writer.write_batch([(tile, b"", 0) for tile in tiles[:2]])
    writer.write_batch([(tile, b"", 0) for tile in tiles[2:]])
    writer.close("12.5")
    ds = pydicom.dcmread(path)
    assert float(ds.LossyImageCompressionRatio) == 12.5
    assert "ExtendedOffsetTable" not in ds
    for i, tile in enumerate(tiles):
        assert get_frame(ds.PixelData, i, number_of_frames=5).rstrip(b"\x00") == tile


def test_extended_offset_table(tmp_path):
    """Past 4 GiB the offsets go into an Extended Offset Table (forced here on a small file)."""
    tiles = _tiles(4)
    path = tmp_path / "eot.dcm"
    writer = FrameWriter(path, _header(tmp_path, 4, []), 4, large=True)
    writer.write_batch([(tile, b"", 0) for tile in tiles])
    writer.close()
    ds = pydicom.dcmread(path)
    offsets = np.frombuffer(ds.ExtendedOffsetTable, dtype="<u8")
    lengths = np.frombuffer(ds.ExtendedOffsetTableLengths, dtype="<u8")
    assert len(offsets) == len(lengths) == 4
    frames = list(generate_frames(ds.PixelData, number_of_frames=4))
    assert [f.rstrip(b"\x00") for f in frames] == tiles
    for i, tile in enumerate(tiles):
        frame = get_frame(
            ds.PixelData,
            i,
            extended_offsets=(ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths),
        )
        assert frame.rstrip(b"\x00") == tile
    assert int(lengths[0]) == len(frames[0])


def test_prefix_and_skip_build_the_frame(tmp_path):
    tiles = _tiles(2)
    path = tmp_path / "prefix.dcm"
    writer = FrameWriter(path, _header(tmp_path, 2, []), 2, large=False)
    writer.write_batch([(memoryview(tile), tile[:2], 2) for tile in tiles])
    writer.close()
    ds = pydicom.dcmread(path)
    assert [f.rstrip(b"\x00") for f in generate_frames(ds.PixelData, number_of_frames=2)] == tiles
