// Slide viewer: the slides of a case in tabs, OpenSeadragon over WADO-RS frames, magnification
// buttons, scale bar, navigator, label and metadata panels, keyboard control and deep links.

import { Annotations } from "./annotations.js";
import { conversionOf, describe, follow as followJob, nextState } from "./conversion.js";
import { DICOMWEB, first, formatDate, getJson, instanceUrl, qido } from "./dicom.js";
import { installHeader, showError } from "./nav.js";
import { slidesOfStudy } from "./pyramid.js";
import { DicomTileSource } from "./tilesource.js";

const OSD = window.OpenSeadragon;
const MAGNIFICATIONS = [1.25, 2.5, 5, 10, 20, 40];
const PAN_FRACTION = 0.25;
const SCALE_BAR_PX = 120;

const studyUid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const state = { slides: [], current: -1, viewer: null, source: null, compare: null, annotations: null, job: null };
// Figures and hooks for end-to-end tests and benchmarks. firstPaint: when the first view was
// painted, and how much of the slide there was; refinements: re-opened on finer levels since.
const api = (window.tesseraViewer = {
  state,
  openMs: null,
  ready: null,
  measureAdjacent,
  prefetch: true,
  setChannel,
  setContrast,
  firstPaint: null,
  refinements: 0,
  converted: null,
});

installHeader();
// Resolves once the first view is painted, or the page shows why it cannot be (api.error).
api.ready = main().catch((error) => {
  api.error = error.message;
  showError("#error", error);
});

async function main() {
  state.job = await conversionOf(studyUid);
  showConversion(state.job);
  state.slides = await loadSlides();
  // Opened while converting, before any pyramid level is in: wait for the first one.
  while (!state.slides.length && state.job && !state.job.finished) {
    state.job = await nextState(state.job);
    showConversion(state.job);
    state.slides = await loadSlides();
  }
  if (!state.slides.length) throw new Error("This study has no whole-slide images.");
  document.title = `${state.slides[0].patient.name || state.slides[0].patient.id} · slides`;
  state.viewer = createViewer();
  state.annotations = api.annotations = new Annotations(state.viewer, studyUid);
  await state.annotations.init();
  buildTabs();
  bindKeys();
  const link = readHash();
  await showSlide(Math.min(link.slide ?? 0, state.slides.length - 1), link);
  if (state.job && !state.job.finished) api.converted = followConversion(state.job);
}

async function loadSlides() {
  const [instances, transferSyntaxes] = await Promise.all([
    getJson(`${DICOMWEB}/studies/${studyUid}/metadata`, { cache: "no-cache" }),
    storedTransferSyntaxes(),
  ]);
  return slidesOfStudy(instances, transferSyntaxes);
}

// While the job stores more of the slide, re-read the study and re-open the current slide on
// its finer levels, keeping the view where it is.
async function followConversion(job) {
  const last = await followJob(job, async (now) => {
    state.job = now;
    showConversion(now);
    await refine();
  });
  state.job = last;
  showConversion(last);
  await refine(); // what the last change stored, and the final state
  return last;
}

async function refine() {
  const slides = await loadSlides();
  const shown = state.slides[state.current];
  const index = slides.findIndex((s) => s.series === shown.series);
  if (index < 0) return;
  const slide = slides[index];
  // The same channels, as the user has set them (toggles, black and white points), also in the
  // tile source that stays open when no finer level came.
  if (slide.channels.length === shown.channels.length) slide.channels = shown.channels;
  state.slides = slides;
  state.current = index;
  renderLabel(slide);
  renderMetadata(slide);
  if (slide.levels.length === shown.levels.length && slide.width === shown.width) return;
  const vp = state.viewer.viewport;
  const [centre, zoom] = [vp.getCenter(true), vp.getZoom(true)];
  state.source?.prefetcher.cancel();
  state.source = new DicomTileSource(slide);
  await new Promise((resolve, reject) => {
    state.viewer.addOnceHandler("open", () => {
      vp.zoomTo(zoom, null, true);
      vp.panTo(centre, true);
      whenFullyLoaded(state.viewer.world.getItemAt(0)).then(() => {
        api.refinements += 1;
        document.body.dataset.levels = String(slide.levels.length);
        resolve();
      });
    });
    state.viewer.addOnceHandler("open-failed", (e) => reject(new Error(e.message)));
    state.viewer.open(state.source);
  });
}

function showConversion(job) {
  const line = document.getElementById("conversion");
  const text = job ? describe(job) : "";
  line.hidden = !text || job.status === "failed";
  line.textContent = job?.status === "failed" ? "" : text;
  if (job?.status === "failed") {
    showError("#error", text);
    document.body.dataset.incomplete = "true";
  }
}

// Frames are fetched as stored when the browser can decode them: QIDO tells how each is stored.
async function storedTransferSyntaxes() {
  const rows = await qido(`/studies/${studyUid}/instances`, { includefield: "00083002" });
  return new Map(rows.map((r) => [first(r, "SOPInstanceUID"), first(r, "AvailableTransferSyntaxUID")]));
}

function createViewer() {
  const viewer = OSD({
    element: document.getElementById("osd"),
    prefixUrl: "/static/vendor/openseadragon/images/",
    drawer: "canvas", // WebGL without a GPU (software GL) took seconds per view; canvas is fast
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    showNavigationControl: false,
    imageLoaderLimit: 32,
    maxTilesPerFrame: 24, // start every missing tile of a view at once, not one per frame
    maxImageCacheCount: 600,
    timeout: 30000,
    animationTime: 0.4,
    springStiffness: 9,
    visibilityRatio: 0.5,
    constrainDuringPan: true,
    minZoomImageRatio: 0.5,
    maxZoomPixelRatio: 4,
    zoomPerScroll: 1.4,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    keyboardNavEnabled: false, // our own handler works without focusing the canvas
  });
  viewer.addHandler("animation", updateReadouts);
  viewer.addHandler("viewport-change", () => state.compare && follow(viewer, state.compare.viewer));
  viewer.addHandler("animation-start", () => state.source?.prefetcher.cancel());
  viewer.addHandler("animation-finish", () => {
    updateReadouts();
    writeHash();
    prefetchAround();
  });
  window.addEventListener("resize", updateReadouts);
  return viewer;
}

function buildTabs() {
  const tabs = document.getElementById("tabs");
  tabs.replaceChildren(
    ...state.slides.map((slide, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.role = "tab";
      button.textContent = slide.container || slide.description || `Slide ${i + 1}`;
      button.title = slide.specimen || slide.series;
      button.addEventListener("click", () => showSlide(i));
      return button;
    }),
  );
  document.getElementById("prev").addEventListener("click", () => step(-1));
  document.getElementById("next").addEventListener("click", () => step(1));
  const mags = document.getElementById("mags");
  mags.replaceChildren(
    ...MAGNIFICATIONS.map((m) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = `${m}x`;
      button.dataset.mag = m;
      button.addEventListener("click", () => goToMagnification(m));
      return button;
    }),
  );
  document.getElementById("home").addEventListener("click", () => state.viewer.viewport.goHome());
  const compare = document.getElementById("compare");
  compare.disabled = state.slides.length < 2;
  compare.addEventListener("click", toggleCompare);
}

function step(delta) {
  const n = state.slides.length;
  return showSlide((state.current + delta + n) % n);
}

function showSlide(index, position = {}) {
  const slide = state.slides[index];
  state.current = index;
  applyChannelLink(slide, position);
  state.source?.prefetcher.cancel();
  state.source = new DicomTileSource(slide);
  document.querySelectorAll("#tabs button").forEach((b, i) => b.setAttribute("aria-selected", String(i === index)));
  document.getElementById("prev").disabled = document.getElementById("next").disabled = state.slides.length < 2;
  document.getElementById("slide-count").textContent = `${index + 1} / ${state.slides.length}`;
  renderLabel(slide);
  renderMetadata(slide);
  renderChannels(slide);
  state.annotations.show(slide).catch((error) => showError("#error", error));
  document.querySelectorAll("#mags button").forEach((b) => {
    b.disabled = !slide.baseMagnification || Number(b.dataset.mag) > slide.baseMagnification * 4;
  });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    state.viewer.addOnceHandler("open", () => {
      const image = state.viewer.world.getItemAt(0);
      if (position.zoom) {
        const vp = state.viewer.viewport;
        vp.zoomTo(vp.imageToViewportZoom(position.zoom), null, true);
        vp.panTo(vp.imageToViewportCoordinates(position.x, position.y), true);
      }
      whenFullyLoaded(image).then(() => {
        const now = performance.now();
        if (api.openMs === null) api.openMs = now; // since navigation start: the case is open
        api.firstPaint ??= { ms: now, levels: slide.levels.length, width: slide.width };
        document.body.dataset.levels = String(slide.levels.length);
        api.lastSlideMs = now - started;
        document.body.dataset.loaded = String(index);
        updateReadouts();
        prefetchAround();
        resolve(slide);
      });
    });
    state.viewer.addOnceHandler("open-failed", (e) => reject(new Error(e.message)));
    state.viewer.open(state.source);
  });
}

function whenFullyLoaded(image) {
  return new Promise((resolve) => {
    if (image.getFullyLoaded()) return resolve();
    const handler = (e) => {
      if (e.fullyLoaded) {
        image.removeHandler("fully-loaded-change", handler);
        resolve();
      }
    };
    image.addHandler("fully-loaded-change", handler);
  });
}

// Pan by one field of view and report how long until every tile of the new view is painted.
function measureAdjacent(dx = 1, dy = 0) {
  const vp = state.viewer.viewport;
  const image = state.viewer.world.getItemAt(0);
  const bounds = vp.getBounds(true);
  const started = performance.now();
  vp.panBy(new OSD.Point(bounds.width * dx, bounds.height * dy), true);
  state.viewer.forceRedraw();
  return new Promise((resolve) => {
    // The view is settled after the next draw; if all its tiles were cached it is loaded then.
    state.viewer.addOnceHandler("update-viewport", () =>
      whenFullyLoaded(image).then(() => resolve(performance.now() - started)),
    );
  });
}

// Side by side: the next slide of the case in a second viewer that follows the first one, at
// the same magnification and the same image position (serial sections line up roughly so).
function toggleCompare() {
  const pane = document.getElementById("osd2");
  const on = pane.hidden;
  pane.hidden = !on;
  document.querySelector(".viewer-main").classList.toggle("compare", on);
  document.getElementById("compare").setAttribute("aria-pressed", String(on));
  if (!on) {
    state.compare?.viewer.destroy();
    state.compare = null;
    return;
  }
  const index = (state.current + 1) % state.slides.length;
  const viewer = OSD({
    element: pane,
    prefixUrl: "/static/vendor/openseadragon/images/",
    drawer: "canvas",
    showNavigationControl: false,
    imageLoaderLimit: 32,
    maxTilesPerFrame: 24,
    visibilityRatio: 0.5,
    minZoomImageRatio: 0.5,
    maxZoomPixelRatio: 4,
    keyboardNavEnabled: false,
  });
  state.compare = { viewer, slide: state.slides[index] };
  viewer.addOnceHandler("open", () => follow(state.viewer, viewer));
  viewer.open(new DicomTileSource(state.compare.slide));
  viewer.addHandler("viewport-change", () => follow(viewer, state.viewer));
}

let following = false;
const placedBy = new WeakMap(); // viewer -> the view follow() gave it, to tell echoes apart

function follow(from, to) {
  if (following || !state.compare || !to.world.getItemCount() || !from.world.getItemCount()) return;
  if (isPlacedView(from)) return; // this change is the echo of following, not the user's
  const [fromSlide, toSlide] =
    from === state.viewer ? [state.slides[state.current], state.compare.slide] : [state.compare.slide, state.slides[state.current]];
  const ratio = fromSlide.baseMagnification && toSlide.baseMagnification ? fromSlide.baseMagnification / toSlide.baseMagnification : 1;
  const source = from.viewport;
  const target = to.viewport;
  following = true;
  try {
    const imageZoom = source.viewportToImageZoom(source.getZoom(true)) * ratio;
    const centre = source.viewportToImageCoordinates(source.getCenter(true));
    target.zoomTo(target.imageToViewportZoom(imageZoom), null, true);
    target.panTo(target.imageToViewportCoordinates(centre.x, centre.y), true);
    placedBy.set(to, { zoom: target.getZoom(true), centre: target.getCenter(true) });
  } finally {
    following = false;
  }
}

function isPlacedView(viewer) {
  const placed = placedBy.get(viewer);
  if (!placed) return false;
  const vp = viewer.viewport;
  const same =
    Math.abs(vp.getZoom(true) / placed.zoom - 1) < 1e-6 && vp.getCenter(true).distanceTo(placed.centre) < 1e-9;
  if (!same) placedBy.delete(viewer);
  return same;
}

function prefetchAround() {
  const image = state.viewer.world.getItemAt(0);
  if (!image || !state.source || !api.prefetch) return;
  const vp = state.viewer.viewport;
  const bounds = vp.viewportToImageRectangle(vp.getBounds(true));
  // After the visible tiles: OSD's own loads go first.
  whenFullyLoaded(image).then(() => state.source.prefetcher.around(bounds, currentImageZoom()));
}

function goToMagnification(mag) {
  const slide = state.slides[state.current];
  const vp = state.viewer.viewport;
  vp.zoomTo(vp.imageToViewportZoom(mag / slide.baseMagnification));
}

function currentImageZoom() {
  const vp = state.viewer.viewport;
  return vp.viewportToImageZoom(vp.getZoom(true));
}

function updateReadouts() {
  const slide = state.slides[state.current];
  if (!slide || !state.viewer.world.getItemCount()) return;
  const imageZoom = currentImageZoom();
  const mag = document.getElementById("mag-readout");
  mag.textContent = slide.baseMagnification ? `${(slide.baseMagnification * imageZoom).toFixed(1)}x` : `${(imageZoom * 100).toFixed(0)}%`;
  document.querySelectorAll("#mags button").forEach((b) => {
    const target = Number(b.dataset.mag) / slide.baseMagnification;
    b.classList.toggle("active", Math.abs(imageZoom / target - 1) < 0.05);
  });
  drawScaleBar(slide, imageZoom);
}

function drawScaleBar(slide, imageZoom) {
  const bar = document.getElementById("scalebar");
  if (!slide.micronsPerPixel) {
    bar.hidden = true;
    return;
  }
  const micronsPerScreenPixel = slide.micronsPerPixel / imageZoom;
  const target = SCALE_BAR_PX * micronsPerScreenPixel;
  const magnitude = 10 ** Math.floor(Math.log10(target));
  const nice = [5, 2, 1].map((f) => f * magnitude).find((v) => v <= target) || magnitude;
  bar.hidden = false;
  bar.querySelector(".bar").style.width = `${nice / micronsPerScreenPixel}px`;
  bar.querySelector(".text").textContent = nice >= 1000 ? `${nice / 1000} mm` : `${nice} µm`;
}

// Visible channels and black/white points from a deep link (before the tiles are made).
function applyChannelLink(slide, position) {
  const n = slide.channels.length;
  if (position.channels?.length === n) slide.channels.forEach((c, i) => (c.visible = position.channels[i] === "1"));
  if (position.contrast?.length === n) {
    slide.channels.forEach((c, i) => ([c.black, c.white] = position.contrast[i]));
  }
}

// Fluorescence: per channel a toggle in its display colour, and its black and white points.
function renderChannels(slide) {
  const section = document.getElementById("channels");
  section.hidden = !slide.channels.length;
  state.source.compositor?.ready.then(() => showContrast(slide));
  document.getElementById("channel-list").replaceChildren(
    ...slide.channels.map((channel, index) => {
      const li = document.createElement("li");
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = channel.visible;
      box.dataset.channel = index;
      box.addEventListener("change", () => setChannel(index, box.checked));
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${channel.color.join(",")})`;
      const name = document.createElement("span");
      name.textContent = channel.name;
      const nm = document.createElement("span");
      nm.className = "nm";
      nm.textContent = channel.emission || channel.excitation ? `${channel.emission || channel.excitation} nm` : "";
      label.append(box, swatch, name, nm);
      const top = 2 ** (slide.levels[0].channels[index]?.bits || 8) - 1;
      const points = ["black", "white"].map((point) => {
        const range = document.createElement("input");
        range.type = "range";
        range.min = 0;
        range.max = top;
        range.title = `${channel.name}: ${point} point`;
        range.dataset.channel = index;
        range.dataset.point = point;
        range.addEventListener("change", () => {
          const [black, white] = points.map((r) => Number(r.value));
          setContrast(index, black, white);
        });
        return range;
      });
      const contrast = document.createElement("div");
      contrast.className = "contrast";
      contrast.append(...points);
      li.append(label, contrast);
      return li;
    }),
  );
}

function showContrast(slide) {
  slide.channels.forEach((c, i) => {
    for (const point of ["black", "white"]) {
      const range = document.querySelector(`#channel-list input[data-channel="${i}"][data-point="${point}"]`);
      if (range) range.value = c[point];
    }
  });
}

// Show or hide a channel; resolves once the view is painted again.
function setChannel(index, visible) {
  const slide = state.slides[state.current];
  slide.channels[index].visible = visible;
  const box = document.querySelector(`#channel-list input[type="checkbox"][data-channel="${index}"]`);
  if (box) box.checked = visible;
  return redrawChannels();
}

// Set a channel's black and white points (sample values); resolves once repainted.
function setContrast(index, black, white) {
  const slide = state.slides[state.current];
  const channel = slide.channels[index];
  [channel.black, channel.white] = [Math.min(black, white - 1), Math.max(white, black + 1)];
  showContrast(slide);
  return redrawChannels();
}

function redrawChannels() {
  const image = state.viewer.world.getItemAt(0);
  image.reset(); // the blended tiles show the old set; their cache keys carry it
  state.viewer.forceRedraw();
  writeHash();
  return whenFullyLoaded(image);
}

function renderLabel(slide) {
  const label = document.getElementById("label");
  const overview = document.getElementById("overview");
  for (const [img, ref] of [
    [label, slide.label],
    [overview, slide.overview],
  ]) {
    img.closest("figure").hidden = !ref;
    if (ref) img.src = `${instanceUrl(ref.study, ref.series, ref.sop)}/rendered`;
    else img.removeAttribute("src");
  }
  document.getElementById("label-text").textContent = slide.labelText;
}

function renderMetadata(slide) {
  const rows = [
    ["Patient", slide.patient.name],
    ["Patient ID", slide.patient.id],
    ["Accession", slide.accession],
    ["Study date", formatDate(slide.studyDate)],
    ["Specimen", slide.container],
    ["Description", slide.specimen || slide.description],
    ["Size", `${slide.width} × ${slide.height} px`],
    ["Levels", slide.levels.map((l) => l.width).join(", ")],
    ["Tile", `${slide.levels[0].tileWidth} × ${slide.levels[0].tileHeight}`],
    ["Pixel spacing", slide.micronsPerPixel ? `${slide.micronsPerPixel.toFixed(4)} µm` : "unknown"],
    ["Magnification", slide.baseMagnification ? `${slide.baseMagnification.toFixed(1)}x` : "unknown"],
    ["Objective", slide.objectivePower ? `${slide.objectivePower}x` : ""],
    ["Scanner", slide.manufacturer],
  ].filter(([, v]) => v);
  const dl = document.getElementById("metadata");
  dl.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }),
  );
  const patientLink = document.getElementById("patient-link");
  patientLink.href = `/studies?PatientID=${encodeURIComponent(slide.patient.id)}`;
  patientLink.textContent = `All studies of ${slide.patient.name || slide.patient.id}`;
  document.getElementById("interop-link").href = `/interop/${slide.study}?series=${slide.series}`;
}

function bindKeys() {
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || e.ctrlKey || e.metaKey || e.altKey) return;
    const vp = state.viewer.viewport;
    const bounds = vp.getBounds();
    const pans = {
      ArrowLeft: [-1, 0],
      ArrowRight: [1, 0],
      ArrowUp: [0, -1],
      ArrowDown: [0, 1],
    };
    if (pans[e.key]) {
      const [dx, dy] = pans[e.key];
      vp.panBy(new OSD.Point(dx * bounds.width * PAN_FRACTION, dy * bounds.height * PAN_FRACTION));
    } else if (e.key === "+" || e.key === "=") {
      vp.zoomBy(1.5);
    } else if (e.key === "-" || e.key === "_") {
      vp.zoomBy(1 / 1.5);
    } else if (e.key === "0" || e.key === "Home") {
      vp.goHome();
    } else if (e.key === "PageDown" || e.key === "n") {
      step(1);
    } else if (e.key === "PageUp" || e.key === "p") {
      step(-1);
    } else {
      return;
    }
    e.preventDefault();
  });
}

// Deep link: #slide=<index>&x=<col>&y=<row>&zoom=<screen px per image px>, image coordinates
// of the centre of the view at full resolution. Fluorescence: channels=<0 or 1 per channel> and
// contrast=<black>:<white>,... (sample values per channel).
function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const number = (key) => (params.has(key) ? Number(params.get(key)) : undefined);
  const link = { slide: number("slide"), x: number("x"), y: number("y"), zoom: number("zoom") };
  if (/^[01]+$/.test(params.get("channels") || "")) link.channels = params.get("channels");
  const contrast = (params.get("contrast") || "").split(",").map((pair) => pair.split(":").map(Number));
  if (contrast.every((pair) => pair.length === 2 && pair.every(Number.isFinite))) link.contrast = contrast;
  if (![link.x, link.y, link.zoom].every(Number.isFinite)) delete link.zoom;
  return link;
}

function writeHash() {
  if (state.current < 0 || !state.viewer.world.getItemCount()) return;
  const vp = state.viewer.viewport;
  const centre = vp.viewportToImageCoordinates(vp.getCenter(true));
  const slide = state.slides[state.current];
  const channels = slide.channels.length
    ? `&channels=${slide.channels.map((c) => (c.visible ? 1 : 0)).join("")}` +
      `&contrast=${slide.channels.map((c) => `${c.black}:${c.white}`).join(",")}`
    : "";
  const hash = `#slide=${state.current}&x=${Math.round(centre.x)}&y=${Math.round(centre.y)}&zoom=${currentImageZoom().toPrecision(4)}${channels}`;
  history.replaceState(null, "", hash);
}

window.addEventListener("hashchange", () => {
  const link = readHash();
  if (link.slide !== undefined && link.slide !== state.current) showSlide(link.slide, link);
  else if (link.zoom) {
    const vp = state.viewer.viewport;
    vp.zoomTo(vp.imageToViewportZoom(link.zoom));
    vp.panTo(vp.imageToViewportCoordinates(link.x, link.y));
  }
});

