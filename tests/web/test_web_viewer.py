"""End-to-end: a converted slide in our viewer and in dicom-microscopy-viewer, headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import openslide
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid
from web_support import Console, chromium, ingest_all, new_page

from wsi import ConvertOptions, SlideIds, convert_slide

pytestmark = pytest.mark.browser

SLIDE = "wsi/CMU-1-Small-Region.svs"
BENCH_OUT = Path(__file__).resolve().parents[2] / "bench" / "out" / "web_viewer.json"
# Image pixel at the top-left of the view when comparing with OpenSlide (full resolution).
VIEW_ORIGIN = (600, 1000)
MARGIN = 20  # screen pixels kept clear of the view's edge
PAN_JS = "([dx, dy]) => window.tesseraViewer.measureAdjacent(dx, dy)"
SETTLE_MS = 1000  # how long the user looks at a view before moving on
# Tolerances (8-bit levels) for the same JPEG tiles decoded by Chromium and by OpenSlide, over
# 8x8 pixel blocks: OpenSeadragon draws each tile one pixel wider to hide seams, which resamples
# the texture slightly. Wrong colours, tiles or levels give differences many times larger.
BLOCK = 8
MEAN_TOLERANCE = 4.0
P99_TOLERANCE = 25.0
CHANNEL_BIAS_TOLERANCE = 1.5


@pytest.fixture
async def slide_study(hub_server, corpus, tmp_path) -> str:
    out = tmp_path / "converted"
    out.mkdir()
    ids = SlideIds(patient_id="P-VIEW", patient_name="Viewer^Test", accession="ACC-VIEW")
    paths = await asyncio.to_thread(
        convert_slide, corpus / SLIDE, out, ids, ConvertOptions(workers=1)
    )
    return await ingest_all(hub_server.archive, paths)


def png_to_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def differences(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a - b)
    return float(diff.mean()), float(np.percentile(diff, 99))


def block_means(a: np.ndarray, k: int = BLOCK) -> np.ndarray:
    h, w = a.shape[0] // k * k, a.shape[1] // k * k
    return a[:h, :w].reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))


async def wait_painted(page) -> None:
    """Until the view has stopped moving and every tile it needs is loaded and drawn.

    On a loaded machine the opening zoom animation can outlast the first tiles: a view that
    is still moving is not the view the test compares, so the springs must be at rest too,
    over two consecutive animation frames.
    """
    await page.wait_for_function(
        """() => new Promise(resolve => {
            const settled = () => {
                const v = window.tesseraViewer.state.viewer;
                const vp = v.viewport;
                const springs = [vp.zoomSpring, vp.centerSpringX, vp.centerSpringY];
                return springs.every(s => s.isAtTargetValue())
                    && v.world.getItemAt(0).getFullyLoaded()
                    && v.imageLoader.jobsInProgress === 0
                    && !v.world.needsDraw();
            };
            const first = settled();
            requestAnimationFrame(() => requestAnimationFrame(
                () => resolve(first && settled())));
        })""",
        polling=100,
    )


async def _eventually(condition, seconds: float = 60.0) -> bool:
    """Whether ``condition`` comes true within ``seconds`` (responses arrive as events)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_viewer_paints_level0_tiles_that_match_openslide(hub_server, slide_study, corpus):
    frame_urls: list[str] = []
    async with chromium() as browser:
        # A small window, so that the test slide holds several full-resolution views.
        page = await new_page(browser, hub_server, width=960, height=720)
        console = Console(page)
        page.on("response", lambda r: "/frames/" in r.url and frame_urls.append(r.url))
        started = time.perf_counter()
        await page.goto(f"{hub_server.url}/viewer/{slide_study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        wall_open_ms = (time.perf_counter() - started) * 1000
        # No prefetch until the prefetched pans below, so that the cold pans are cold.
        await page.evaluate("() => { window.tesseraViewer.prefetch = false; }")
        open_ms = await page.evaluate("() => window.tesseraViewer.openMs")
        level0 = await page.evaluate("() => window.tesseraViewer.state.slides[0].levels[0]")
        assert (level0["width"], level0["height"]) == (2220, 2967)

        # Metadata and label panels.
        metadata = await page.inner_text("#metadata")
        assert "P-VIEW" in metadata and "ACC-VIEW" in metadata and "2220 × 2967" in metadata
        assert "0.4990 µm" in metadata and "20.0x" in metadata
        label_png = await page.evaluate(
            """async () => {
                const img = document.getElementById('label');
                await img.decode();
                const c = document.createElement('canvas');
                c.width = img.naturalWidth; c.height = img.naturalHeight;
                c.getContext('2d').drawImage(img, 0, 0);
                return c.toDataURL('image/png');
            }"""
        )
        shown_label = png_to_rgb(base64.b64decode(label_png.split(",", 1)[1]))
        with openslide.OpenSlide(corpus / SLIDE) as slide:
            label = np.asarray(slide.associated_images["label"].convert("RGB"), dtype=np.int16)
        assert shown_label.shape == label.shape
        assert differences(shown_label, label)[0] < 8

        # Zoom to full resolution (one image pixel per screen pixel) at VIEW_ORIGIN.
        view = await page.evaluate(
            """([x0, y0]) => {
                const v = window.tesseraViewer.state.viewer, vp = v.viewport;
                const size = vp.getContainerSize();
                vp.zoomTo(vp.imageToViewportZoom(1), null, true);
                vp.panTo(vp.imageToViewportCoordinates(x0 + size.x / 2, y0 + size.y / 2), true);
                v.forceRedraw();
                return {width: size.x, height: size.y};
            }""",
            list(VIEW_ORIGIN),
        )
        await wait_painted(page)
        placed = await page.evaluate(
            """() => {
                const v = window.tesseraViewer.state.viewer, vp = v.viewport;
                const tl = vp.viewerElementToImageCoordinates(new OpenSeadragon.Point(0, 0));
                const box = document.getElementById('osd').getBoundingClientRect();
                return {x: tl.x, y: tl.y, left: box.left, top: box.top,
                        zoom: vp.viewportToImageZoom(vp.getZoom(true)), hash: location.hash};
            }"""
        )
        assert placed["zoom"] == pytest.approx(1.0, abs=1e-6)
        assert (placed["x"], placed["y"]) == pytest.approx(VIEW_ORIGIN, abs=0.01)
        assert f"x={VIEW_ORIGIN[0] + view['width'] // 2}" in placed["hash"]
        assert await _eventually(lambda: any(level0["sop"] in url for url in frame_urls)), (
            "no full-resolution frame fetched"
        )
        await wait_painted(page)  # the level-0 tiles that answer drew
        # JPEG-stored frames are fetched as stored, never re-rendered by the server.
        assert not any(url.endswith("/rendered") for url in frame_urls)

        # Clear of the navigator (bottom right) and the scale bar (bottom left).
        width, height = min(view["width"] - 260, 640), min(view["height"] - 180, 420)
        shot = await page.screenshot(
            clip={
                "x": placed["left"] + MARGIN,
                "y": placed["top"] + MARGIN,
                "width": width,
                "height": height,
            }
        )
        painted = png_to_rgb(shot)
        with openslide.OpenSlide(corpus / SLIDE) as slide:
            region = slide.read_region(
                (VIEW_ORIGIN[0] + MARGIN, VIEW_ORIGIN[1] + MARGIN), 0, (width, height)
            )
        expected = np.asarray(region.convert("RGB"), dtype=np.int16)
        assert painted.shape == expected.shape
        assert painted.std() > 20, "the view is blank"
        mean, p99 = differences(block_means(painted), block_means(expected))
        assert mean < MEAN_TOLERANCE and p99 < P99_TOLERANCE, (mean, p99)
        bias = np.abs((painted - expected).reshape(-1, 3).mean(axis=0))
        assert (bias < CHANNEL_BIAS_TOLERANCE).all(), bias

        # Adjacent fields of view at full resolution, from the top-left corner, each one new:
        # first fetched only when needed, then with the neighbours prefetched while the user
        # looks at a view.
        await page.evaluate(
            """() => { const vp = window.tesseraViewer.state.viewer.viewport;
                       vp.panTo(vp.imageToViewportCoordinates(vp.getContainerSize().x / 2,
                                                              vp.getContainerSize().y / 2), true);
                       vp.applyConstraints(true); }"""
        )
        await page.evaluate(PAN_JS, [0, 0])
        cold = [await page.evaluate(PAN_JS, move) for move in ([1, 0], [1, 0], [0, 1])]
        await page.evaluate("() => { window.tesseraViewer.prefetch = true; }")
        prefetched = []
        for move in ([-1, 0], [-1, 0], [0, 1]):
            await page.evaluate(PAN_JS, [0, 0])  # settles and starts the prefetch
            await page.wait_for_timeout(SETTLE_MS)
            prefetched.append(await page.evaluate(PAN_JS, move))
        # Keyboard: + zooms in, arrows pan.
        zoom_before = await page.evaluate(
            "() => window.tesseraViewer.state.viewer.viewport.getZoom()"
        )
        await page.keyboard.press("-")
        await page.wait_for_function(  # the zoom animates from the key press on
            f"() => window.tesseraViewer.state.viewer.viewport.getZoom() < {zoom_before}",
            timeout=60_000,
        )
        assert console.errors == []

    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "open_case_ms_since_navigation": round(open_ms),
        "open_case_ms_wall": round(wall_open_ms),
        "adjacent_fov_cold_ms": [round(a) for a in cold],
        "adjacent_fov_cold_median_ms": round(statistics.median(cold)),
        "adjacent_fov_prefetched_ms": [round(a) for a in prefetched],
        "adjacent_fov_prefetched_median_ms": round(statistics.median(prefetched)),
        "frames_fetched": len(frame_urls),
        "compare_mean_abs_diff": round(mean, 2),
        "compare_p99_abs_diff": round(p99, 1),
    }
    BENCH_OUT.parent.mkdir(parents=True, exist_ok=True)
    BENCH_OUT.write_text(json.dumps(figures, indent=2))
    print("viewer figures:", figures)


async def test_dicom_microscopy_viewer_renders_our_frames(hub_server, slide_study):
    frames: list[int] = []
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        page.on("response", lambda r: "/frames/" in r.url and frames.append(r.status))
        await page.goto(f"{hub_server.url}/interop/{slide_study}")
        await page.wait_for_function("() => window.tesseraInterop.viewer !== null")
        # Tissue (H&E: pink and purple) gets painted, not only the background.
        tissue = 0.0
        for _ in range(60):
            shot = png_to_rgb(await page.locator("#dmv").screenshot())
            tissue = float((shot[..., 0] - shot[..., 1] > 40).mean())
            if tissue > 0.02:
                break
            await page.wait_for_timeout(500)
        assert tissue > 0.02, tissue
        assert frames and all(status == 200 for status in frames), frames
        assert console.errors == []


async def test_case_tabs_magnification_keyboard_and_deep_link(
    hub_server, slide_study, corpus, tmp_path
):
    # A second slide of the same case, from another specimen.
    out = tmp_path / "second"
    out.mkdir()
    ids = SlideIds(patient_id="P-VIEW", study_uid=slide_study, specimen_id="SECOND-BLOCK")
    paths = await asyncio.to_thread(
        convert_slide, corpus / "wsi" / "small.svs", out, ids, ConvertOptions(workers=1)
    )
    assert await ingest_all(hub_server.archive, paths) == slide_study

    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.goto(f"{hub_server.url}/viewer/{slide_study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        tabs = page.locator("#tabs button")
        assert await tabs.count() == 2
        assert await page.inner_text("#slide-count") == "1 / 2"

        # Magnification buttons follow the pixel spacing (0.499 µm: 20x at full resolution).
        await page.click("#mags button[data-mag='10']")
        await page.wait_for_function(
            "() => document.getElementById('mag-readout').textContent === '10.0x'"
        )
        zoom = await page.evaluate(
            "() => { const vp = tesseraViewer.state.viewer.viewport;"
            " return vp.viewportToImageZoom(vp.getZoom()); }"
        )
        assert zoom == pytest.approx(0.5, rel=0.01)
        # 120 screen px at 10x are 120 µm: the bar shows 100 µm.
        assert await page.inner_text("#scalebar .text") == "100 µm"
        assert await page.locator("#mags button[data-mag='40']").is_enabled()

        # Keyboard: arrows pan, + zooms.
        centre = "() => tesseraViewer.state.viewer.viewport.getCenter().x"
        before = await page.evaluate(centre)
        await page.keyboard.press("ArrowRight")
        assert await page.evaluate(centre) > before

        # Side by side: the second slide follows the first at the same magnification.
        await page.click("#compare")
        await page.wait_for_function(
            "() => tesseraViewer.state.compare?.viewer.world.getItemCount() === 1"
        )
        magnifications = """() => {
            const s = tesseraViewer.state, mag = (v, slide) =>
                slide.baseMagnification * v.viewport.viewportToImageZoom(v.viewport.getZoom(true));
            return [mag(s.viewer, s.slides[s.current]), mag(s.compare.viewer, s.compare.slide)];
        }"""
        main_mag, compare_mag = await page.evaluate(magnifications)
        assert compare_mag == pytest.approx(main_mag, rel=0.01)
        await page.click("#mags button[data-mag='5']")
        await page.wait_for_function(
            "() => document.getElementById('mag-readout').textContent === '5.0x'"
        )
        main_mag, compare_mag = await page.evaluate(magnifications)
        assert (main_mag, compare_mag) == pytest.approx((5.0, 5.0), rel=0.01)
        await page.click("#compare")
        assert await page.locator("#osd2").is_hidden()
        await page.click("#mags button[data-mag='10']")
        await page.wait_for_function(
            "() => document.getElementById('mag-readout').textContent === '10.0x'"
        )
        await page.keyboard.press("+")
        await page.wait_for_function(
            "() => document.getElementById('mag-readout').textContent === '15.0x'"
        )

        # Next slide, then back through the deep link of the first view.
        # 10x on a 20.04x slide is an image zoom of 0.499; + makes it 1.5 times that.
        await page.wait_for_function("() => /zoom=0\\.74/.test(location.hash)")
        link = page.url
        await page.click("#next")
        await page.wait_for_function("() => document.body.dataset.loaded === '1'")
        assert "SECOND-BLOCK" in await page.inner_text("#metadata")
        assert await tabs.nth(1).get_attribute("aria-selected") == "true"

        fresh = await new_page(browser, hub_server)
        fresh_console = Console(fresh)
        await fresh.goto(link)
        await fresh.evaluate("() => window.tesseraViewer.ready")
        linked = await fresh.evaluate(
            "() => { const vp = tesseraViewer.state.viewer.viewport;"
            " const c = vp.viewportToImageCoordinates(vp.getCenter());"
            " return {x: c.x, y: c.y, zoom: vp.viewportToImageZoom(vp.getZoom()),"
            " slide: tesseraViewer.state.current}; }"
        )
        params = dict(p.split("=") for p in link.split("#", 1)[1].split("&"))
        assert linked["slide"] == 0
        assert linked["zoom"] == pytest.approx(0.75, rel=0.01)
        assert linked["x"] == pytest.approx(float(params["x"]), abs=2)
        assert linked["y"] == pytest.approx(float(params["y"]), abs=2)

        # The same view again: its frames come from the browser's cache (ETag + immutable).
        view_frames = (
            "() => performance.getEntriesByType('resource').filter(e =>"
            " e.name.includes('/frames/') && e.responseEnd <= window.tesseraViewer.openMs)"
            ".map(e => e.transferSize)"
        )
        await page.goto(link)  # only the hash changes: the viewer shows the first slide there
        await page.wait_for_function("() => document.body.dataset.loaded === '0'")
        await page.goto(f"{hub_server.url}/studies")
        await page.goto(link)
        await page.evaluate("() => window.tesseraViewer.ready")
        transfers = await page.evaluate(view_frames)
        assert transfers and transfers.count(0) == len(transfers), transfers
        assert console.errors == [] and fresh_console.errors == []


def tiled_sparse_copy(src: Path, dst: Path) -> None:
    """Rewrite a TILED_FULL instance as TILED_SPARSE, as some scanners write them: frames stored
    in reverse order, each placed by its own PlanePositionSlideSequence. New study and UIDs."""
    ds = pydicom.dcmread(src)
    count = int(ds.NumberOfFrames)
    across = math.ceil(ds.TotalPixelMatrixColumns / ds.Columns)
    frames = list(generate_frames(ds.PixelData, number_of_frames=count))
    order = list(reversed(range(count)))
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = encapsulate([frames[i] for i in order])
    ds.DimensionOrganizationType = "TILED_SPARSE"
    groups = []
    for i in order:
        position = Dataset()
        position.ColumnPositionInTotalImagePixelMatrix = (i % across) * ds.Columns + 1
        position.RowPositionInTotalImagePixelMatrix = (i // across) * ds.Rows + 1
        position.XOffsetInSlideCoordinateSystem = 0.0
        position.YOffsetInSlideCoordinateSystem = 0.0
        position.ZOffsetInSlideCoordinateSystem = 0.0
        group = Dataset()
        group.PlanePositionSlideSequence = [position]
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(dst, enforce_file_format=True)


async def test_tiled_sparse_pyramid_shows_the_same_image(hub_server, corpus, tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    paths = await asyncio.to_thread(
        convert_slide, corpus / SLIDE, out, SlideIds(patient_id="P-SPARSE"), ConvertOptions()
    )
    headers = [await asyncio.to_thread(pydicom.dcmread, p, stop_before_pixels=True) for p in paths]
    level1 = next(
        p
        for p, ds in zip(paths, headers, strict=True)
        if ds.ImageType[2] == "VOLUME" and ds.TotalPixelMatrixColumns == 1110
    )
    sparse = tmp_path / "sparse.dcm"
    await asyncio.to_thread(tiled_sparse_copy, level1, sparse)
    full_study = await ingest_all(hub_server.archive, [level1])
    sparse_study = await ingest_all(hub_server.archive, [sparse])

    shots = []
    async with chromium() as browser:
        for study in (full_study, sparse_study):
            page = await new_page(browser, hub_server)
            console = Console(page)
            await page.goto(f"{hub_server.url}/viewer/{study}")
            await page.evaluate("() => window.tesseraViewer.ready")
            await wait_painted(page)
            shots.append(png_to_rgb(await page.locator("#osd").screenshot()))
            assert console.errors == []
    full, sparse_view = shots
    assert full.std() > 20, "the view is blank"
    mean, _ = differences(block_means(full), block_means(sparse_view))
    assert mean < 1.0, mean


async def _drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    await page.mouse.move(*start)
    await page.mouse.down()
    await page.mouse.move(*end, steps=8)
    await page.mouse.up()


async def _outline(page, centre: tuple[float, float], radius: float) -> None:
    """A freehand loop around ``centre``, as a hand would drag it."""
    points = [
        (
            centre[0] + radius * math.cos(a / 24 * math.tau),
            centre[1] + radius * math.sin(a / 24 * math.tau),
        )
        for a in range(25)
    ]
    await page.mouse.move(*points[0])
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*point, steps=2)
    await page.mouse.up()


async def test_annotations_are_drawn_measured_saved_and_reloaded(hub_server, slide_study):
    """A pathologist measures a distance, marks a point and outlines a region, saves, and finds
    them again after a reload; the length and area shown are those stored in the DICOM
    annotation instance."""
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        await page.goto(f"{hub_server.url}/viewer/{slide_study}")
        await page.evaluate("() => window.tesseraViewer.ready")
        await wait_painted(page)
        box = await page.locator("#osd").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

        await page.fill("#ann-label", "margin")
        await page.click("#tool-line")
        await _drag(page, (cx - 150, cy), (cx + 150, cy + 40))
        await page.fill("#ann-label", "mitosis")
        await page.click("#tool-point")
        await page.mouse.click(cx, cy + 100)
        await page.fill("#ann-label", "tumour")
        await page.click("#tool-polygon")
        await _outline(page, (cx + 120, cy - 120), 60)
        await page.keyboard.press("Escape")  # back to panning
        drawn = await page.locator("#ann-list li").all_inner_texts()
        assert len(drawn) == 3 and "margin" in drawn[0] and "µm" in drawn[0], drawn
        assert "tumour" in drawn[2] and "mm²" in drawn[2], drawn
        assert await page.locator(".annotation-layer .shape").count() == 3

        await page.click("#ann-save")
        await page.wait_for_function(
            "() => document.querySelector('#ann-status').textContent.startsWith('Saved')"
        )
        await page.reload()
        await page.evaluate("() => window.tesseraViewer.ready")
        await page.wait_for_function("() => document.querySelectorAll('#ann-list li').length === 3")
        assert await page.locator("#ann-list li").all_inner_texts() == drawn
        assert console.errors == []

    refs = await hub_server.archive.instances(slide_study)
    (ann,) = [r for r in refs if r.sop_class_uid == "1.2.840.10008.5.1.4.1.1.91.1"]
    ds = pydicom.dcmread(hub_server.archive.store.path(ann.sha256))
    line = next(g for g in ds.AnnotationGroupSequence if g.GraphicType == "POLYLINE")
    assert line.AnnotationGroupLabel == "margin"
    values = line.MeasurementsSequence[0].MeasurementValuesSequence[0].FloatingPointValues
    (stored_um,) = np.frombuffer(values, dtype="<f4")
    shown_um = float(drawn[0].split("·")[1].split()[0])  # "Measurement: margin · 123.4 µm ×"
    assert shown_um == pytest.approx(float(stored_um), abs=0.1)
    outline = next(g for g in ds.AnnotationGroupSequence if g.GraphicType == "POLYGON")
    values = outline.MeasurementsSequence[0].MeasurementValuesSequence[0].FloatingPointValues
    (stored_mm2,) = np.frombuffer(values, dtype="<f4")
    shown_mm2 = float(drawn[2].split("·")[1].split()[0])  # "Outline: tumour · 0.0123 mm² ×"
    assert shown_mm2 == pytest.approx(float(stored_mm2), rel=0.01)


async def test_dicom_microscopy_viewer_shows_our_annotations(hub_server, slide_study):
    """Annotations saved in our viewer are a standard DICOM object: an independent viewer loads
    them over our DICOMweb (metadata and bulk data) and shows them on the slide."""
    refs = await hub_server.archive.instances(slide_study)
    level0 = next(r for r in refs if "VOLUME" in r.image_type)
    shapes = [
        {"kind": "line", "label": "margin", "points": [[200, 300], [1500, 1200]]},
        {"kind": "point", "label": "mitosis", "points": [[800, 900]]},
    ]
    async with hub_server.session() as http:
        url = f"{hub_server.url}/api/annotations/{slide_study}?image={level0.sop_instance_uid}"
        async with http.post(url, json={"annotations": shapes}) as r:
            assert r.status == 201
    fetched: list[tuple[str, int]] = []
    async with chromium() as browser:
        page = await new_page(browser, hub_server)
        console = Console(page)
        page.on("response", lambda r: "/dicomweb/" in r.url and fetched.append((r.url, r.status)))
        await page.goto(f"{hub_server.url}/interop/{slide_study}")
        groups = await page.wait_for_function("() => window.tesseraInterop.annotationGroups")
        assert await groups.json_value() == 2
        shown = await page.evaluate(
            """() => window.tesseraInterop.viewer.getAllAnnotationGroups()
                     .map((g) => window.tesseraInterop.viewer.isAnnotationGroupVisible(g.uid))"""
        )
        assert shown == [True, True]
        await page.wait_for_timeout(1000)  # bulk data of the groups loads after they are shown
        assert console.errors == []
    assert all(status == 200 for _, status in fetched), [f for f in fetched if f[1] != 200]
