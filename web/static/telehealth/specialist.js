// Specialist side: join with the invite code, watch the clinic's live ultrasound, talk, point
// and draw arrows on it, freeze and capture.
import { installHeader } from "../js/nav.js";
import { api, captureControls, HubLink, log, showError } from "./rtc.js";
import { watchLink } from "./linkstats.js";
import { Overlay } from "./overlay.js";

installHeader();

const $ = (selector) => document.querySelector(selector);
const overlay = new Overlay($("#overlay"));
const POINTER_INTERVAL_MS = 50; // at most 20 pointer updates a second
let link = null;

async function join(code) {
  $("#error").hidden = true;
  let session;
  try {
    session = await api("/api/telehealth/join", { method: "POST", body: { code } });
  } catch (error) {
    showError(error);
    return;
  }
  $("#join").hidden = true;
  $("#live").hidden = false;
  const p = session.patient;
  $("#patient").textContent = `${p.name} (${p.id})${p.age ? `, ${p.age}` : ""}${p.weight_kg ? `, ${p.weight_kg} kg` : ""}` +
    (session.accession ? ` · accession ${session.accession}` : "");

  let microphone = null;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    log(`no microphone (${error.message}); listening only`);
  }
  const onCapture = captureControls({ send: (m) => link.send(m) }, $("#capture"), log);
  link = new HubLink({
    sessionId: session.id,
    token: session.specialist_token,
    setup: (pc) => {
      pc.addTransceiver("video", { direction: "recvonly" });
      const track = microphone?.getAudioTracks()[0];
      if (track) pc.addTransceiver(track, { direction: "sendrecv" });
      else pc.addTransceiver("audio", { direction: "recvonly" });
    },
    onTrack: (e) => {
      const target = e.track.kind === "video" ? $("#remote") : $("#remote-audio");
      target.srcObject = new MediaStream([e.track]);
    },
    onMessage: (message) => {
      if (message.type === "freeze" || message.type === "unfreeze") setFrozen(message.type === "freeze");
      else if (message.type === "state") setFrozen(message.frozen);
      else if (message.type === "error") log(`hub: ${message.message}`);
      onCapture(message);
    },
    onEvent: (event) => {
      if (event.type === "peer") log(`${event.role}: ${event.state}`);
    },
    onStatus: (text) => {
      $("#status").textContent = text;
    },
  });
  $("#freeze").onclick = () => link.send({ type: $("#freeze").classList.contains("active") ? "unfreeze" : "freeze" });
  $("#clear").onclick = () => send({ type: "clear" });
  installPointer($("#overlay"));
  watchLink(() => link.pc, $("#link"));
  await link.connect();
}

function send(message) {
  overlay.apply(message); // the specialist sees what the clinic sees
  link.send(message);
}

// Position on the displayed image (the video keeps its aspect ratio inside the element).
function imagePoint(canvas, event) {
  const video = $("#remote");
  const box = canvas.getBoundingClientRect();
  const aspect = video.videoWidth && video.videoHeight ? video.videoWidth / video.videoHeight : 4 / 3;
  let width = box.width;
  let height = box.width / aspect;
  if (height > box.height) {
    height = box.height;
    width = height * aspect;
  }
  const left = box.left + (box.width - width) / 2;
  const top = box.top + (box.height - height) / 2;
  const clamp = (v) => Math.min(1, Math.max(0, v));
  return { x: clamp((event.clientX - left) / width), y: clamp((event.clientY - top) / height) };
}

function installPointer(canvas) {
  let last = 0;
  let dragFrom = null;
  canvas.addEventListener("pointermove", (event) => {
    const now = performance.now();
    if (now - last < POINTER_INTERVAL_MS) return;
    last = now;
    send({ type: "pointer", ...imagePoint(canvas, event) });
  });
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button === 0) dragFrom = imagePoint(canvas, event);
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!dragFrom) return;
    const to = imagePoint(canvas, event);
    if (Math.hypot(to.x - dragFrom.x, to.y - dragFrom.y) > 0.02) {
      send({ type: "arrow", x0: dragFrom.x, y0: dragFrom.y, x1: to.x, y1: to.y });
    }
    dragFrom = null;
  });
  canvas.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    send({ type: "clear" });
  });
}

function setFrozen(frozen) {
  $("#frozen").hidden = !frozen;
  $("#freeze").classList.toggle("active", frozen);
  $("#freeze").textContent = frozen ? "Unfreeze" : "Freeze";
  if (frozen) $("#remote").pause();
  else $("#remote").play();
}

$("#join").addEventListener("submit", (event) => {
  event.preventDefault();
  join(new FormData(event.target).get("code"));
});
const code = new URLSearchParams(location.search).get("code");
if (code) {
  $("#join [name=code]").value = code;
  join(code);
}
