"""Worker processes: the same frames whether the pool forks directly (single-threaded caller,
the command line) or through a fork server (a threaded host such as the hub)."""

from __future__ import annotations

import threading

import pydicom

from wsi import ConvertOptions, convert_slide


def _pixel_data(paths) -> list[bytes]:
    return [pydicom.dcmread(p).PixelData for p in paths if p.name.startswith("level")]


def test_threaded_host_gets_identical_frames(corpus, tmp_path):
    src = corpus / "wsi" / "test3-DAPI-2.ndpi"  # ~400 frames to encode: enough for a worker pool
    # Re-encoded on request: by default its stored levels are re-tiled, with nothing to encode.
    options = ConvertOptions(codec="jpeg", workers=2, include_overview=False)
    direct = convert_slide(src, tmp_path / "direct", options=options)
    release = threading.Event()
    other = threading.Thread(target=release.wait)  # the host's own thread
    other.start()
    try:
        hosted = convert_slide(src, tmp_path / "hosted", options=options)
    finally:
        release.set()
        other.join()
    assert _pixel_data(hosted) == _pixel_data(direct)
    assert len(_pixel_data(direct)) == 7
