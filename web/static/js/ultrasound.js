// Ultrasound viewer: single images and cine loops of multi-frame US, played at the recorded rate.

import { DICOMWEB, fetchFrameBlob, first, formatDate, getJson, instanceUrl, personName, qido } from "./dicom.js";
import { installHeader, showError } from "./nav.js";

const FETCH_CONCURRENCY = 6;
const studyUid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const canvas = document.getElementById("screen");
const context = canvas.getContext("2d");
const slider = document.getElementById("frame");
const fpsInput = document.getElementById("fps");
const playButton = document.getElementById("play");
const cine = { frames: [], index: 0, playing: false, timer: null, loadId: 0 };
window.tesseraCine = cine;

installHeader();
main().catch((error) => showError("#error", error));

async function main() {
  const [instances, stored] = await Promise.all([
    getJson(`${DICOMWEB}/studies/${studyUid}/metadata`),
    qido(`/studies/${studyUid}/instances`, { includefield: "00083002" }),
  ]);
  const syntaxes = new Map(stored.map((r) => [first(r, "SOPInstanceUID"), first(r, "AvailableTransferSyntaxUID")]));
  const images = instances.filter((ds) => first(ds, "Rows"));
  if (!images.length) throw new Error("This study has no images.");
  document.getElementById("patient").textContent = `${personName(first(images[0], "PatientName"))} (${first(images[0], "PatientID") || "?"})`;
  const list = document.getElementById("images");
  list.replaceChildren(
    ...images.map((ds, i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      const frames = first(ds, "NumberOfFrames") || 1;
      button.textContent = `${first(ds, "SeriesDescription") || "Image"} #${first(ds, "InstanceNumber") ?? i + 1} · ${frames} frame${frames > 1 ? "s" : ""}`;
      button.addEventListener("click", () => load(ds, syntaxes));
      li.append(button);
      return li;
    }),
  );
  bindControls();
  await load(images[0], syntaxes);
}

function frameRate(ds) {
  const frameTime = Number(first(ds, "FrameTime"));
  if (frameTime > 0) return 1000 / frameTime;
  return Number(first(ds, "CineRate")) || Number(first(ds, "RecommendedDisplayFrameRate")) || 30;
}

async function load(ds, syntaxes) {
  stop();
  const loadId = ++cine.loadId;
  const sop = first(ds, "SOPInstanceUID");
  const count = first(ds, "NumberOfFrames") || 1;
  const base = instanceUrl(studyUid, first(ds, "SeriesInstanceUID"), sop);
  canvas.width = first(ds, "Columns");
  canvas.height = first(ds, "Rows");
  cine.frames = new Array(count);
  cine.index = 0;
  slider.max = String(count);
  slider.value = "1";
  fpsInput.value = String(Math.round(frameRate(ds) * 10) / 10);
  renderMetadata(ds);
  const loading = document.getElementById("loading");
  let loaded = 0;
  let next = 0;
  // Decoded frames are kept as ImageBitmaps so playback only draws.
  const worker = async () => {
    while (next < count && loadId === cine.loadId) {
      const i = next++;
      const blob = await fetchFrameBlob(`${base}/frames/${i + 1}`, syntaxes.get(sop));
      cine.frames[i] = await createImageBitmap(blob);
      loading.textContent = `loading ${++loaded}/${count}`;
      if (i === cine.index) draw();
    }
  };
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, count) }, worker));
  if (loadId !== cine.loadId) return;
  loading.textContent = "";
  cine.ready = true;
  if (count > 1) play();
}

function draw() {
  const bitmap = cine.frames[cine.index];
  if (bitmap) context.drawImage(bitmap, 0, 0);
  slider.value = String(cine.index + 1);
  document.getElementById("frame-text").textContent = `${cine.index + 1} / ${cine.frames.length}`;
}

function play() {
  if (cine.frames.length < 2) return;
  cine.playing = true;
  playButton.textContent = "❚❚";
  let last = performance.now();
  const tick = (now) => {
    if (!cine.playing) return;
    const interval = 1000 / Math.max(1, Number(fpsInput.value) || 30);
    if (now - last >= interval) {
      last = now - ((now - last) % interval);
      cine.index = (cine.index + 1) % cine.frames.length;
      draw();
    }
    cine.timer = requestAnimationFrame(tick);
  };
  cine.timer = requestAnimationFrame(tick);
}

function stop() {
  cine.playing = false;
  cine.ready = false;
  playButton.textContent = "▶";
  if (cine.timer) cancelAnimationFrame(cine.timer);
}

function bindControls() {
  playButton.addEventListener("click", () => (cine.playing ? stop() : play()));
  slider.addEventListener("input", () => {
    stop();
    cine.index = Number(slider.value) - 1;
    draw();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input")) return;
    if (e.key === " ") (cine.playing ? stop() : play());
    else if (e.key === "ArrowRight") cine.index = Math.min(cine.frames.length - 1, cine.index + 1);
    else if (e.key === "ArrowLeft") cine.index = Math.max(0, cine.index - 1);
    else return;
    e.preventDefault();
    draw();
  });
}

function renderMetadata(ds) {
  const rows = [
    ["Study date", formatDate(first(ds, "StudyDate"))],
    ["Accession", first(ds, "AccessionNumber")],
    ["Size", `${first(ds, "Columns")} × ${first(ds, "Rows")}`],
    ["Frames", String(first(ds, "NumberOfFrames") || 1)],
    ["Frame time", first(ds, "FrameTime") ? `${Number(first(ds, "FrameTime")).toFixed(1)} ms` : ""],
    ["Equipment", [first(ds, "Manufacturer"), first(ds, "ManufacturerModelName")].filter(Boolean).join(" ")],
  ].filter(([, v]) => v);
  document.getElementById("metadata").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}
