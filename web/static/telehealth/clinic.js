// Clinic side: start a session from a worklist item, send the probe video and microphone,
// hear the specialist, see their pointer, freeze and capture; upload device recordings.
import { installHeader } from "../js/nav.js";
import { api, captureControls, HubLink, log, showError } from "./rtc.js";
import { watchLink } from "./linkstats.js";
import { Overlay } from "./overlay.js";
import { SourceStills } from "./source.js";
import { stowUpload } from "./stow.js";

installHeader();

const $ = (selector) => document.querySelector(selector);
const overlay = new Overlay($("#overlay"));
let link = null;

function requestBody(form) {
  const data = Object.fromEntries(new FormData(form));
  if (data.worklist_item) return { worklist_item: data.worklist_item };
  const patient = { name: data.name, id: data.id, birth_date: data.birth_date, sex: data.sex };
  if (data.age) patient.age = data.age;
  if (data.weight_kg) patient.weight_kg = Number(data.weight_kg);
  if (data.size_m) patient.size_m = Number(data.size_m);
  return { patient, accession: data.accession };
}

async function start(event) {
  event.preventDefault();
  $("#error").hidden = true;
  try {
    const session = await api("/api/telehealth/sessions", { method: "POST", body: requestBody(event.target) });
    sessionStorage.setItem(`telehealth:${session.id}`, session.clinic_token);
    history.replaceState(null, "", `/telehealth/clinic?session=${session.id}`);
    await goLive(session.id, session.clinic_token, session.invite_url);
  } catch (error) {
    showError(error);
  }
}

async function goLive(sessionId, token, inviteUrl) {
  $("#start").hidden = true;
  $("#live").hidden = false;
  if (inviteUrl) {
    $("#invite").href = inviteUrl;
    $("#invite").textContent = inviteUrl;
  }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (error) {
    showError(`camera/microphone not available: ${error.message}`);
    return;
  }
  $("#local").srcObject = media;
  const onCapture = captureControls({ send: (m) => link.send(m) }, $("#capture"), log);
  link = new HubLink({
    sessionId,
    token,
    setup: (pc) => {
      for (const track of media.getTracks()) pc.addTransceiver(track, { direction: track.kind === "audio" ? "sendrecv" : "sendonly" });
    },
    onTrack: (e) => {
      if (e.track.kind === "audio") $("#remote-audio").srcObject = new MediaStream([e.track]);
    },
    onMessage: (message) => {
      if (overlay.apply(message)) return;
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
      if (text === "connected") {
        // The camera's native size: captures keep it even when the encoder scales down.
        const { width, height } = media.getVideoTracks()[0].getSettings();
        if (width && height) link.send({ type: "source", width, height });
      }
    },
  });
  // Shown from the hub's answer too: the data channel may be down when it matters most.
  const stills = new SourceStills({
    sessionId,
    token,
    onStored: onCapture,
    onPending: (count) => {
      $("#outbox").dataset.pending = String(count);
      $("#outbox").textContent = count ? `${count} device still(s) waiting to upload` : "";
    },
    onError: (error) => log(error.message),
  });
  $("#source-still").onclick = () => stills.record($("#local")).catch(showError);
  stills.flush(); // what a reload or a lost link left waiting
  $("#freeze").onclick = () => link.send({ type: $("#freeze").classList.contains("active") ? "unfreeze" : "freeze" });
  $("#end").onclick = async () => {
    await api(`/api/telehealth/sessions/${sessionId}`, { method: "DELETE", token }).catch(showError);
    link.close();
    for (const track of media.getTracks()) track.stop();
    $("#status").textContent = "session ended";
  };
  watchLink(() => link.pc, $("#link"));
  await link.connect();
}

function setFrozen(frozen) {
  $("#frozen").hidden = !frozen;
  $("#freeze").classList.toggle("active", frozen);
  $("#freeze").textContent = frozen ? "Unfreeze" : "Freeze";
  if (frozen) $("#local").pause();
  else $("#local").play();
}

// Scheduled ultrasound steps to start from; without worklist access the fields stay.
async function loadWorklist() {
  let items = [];
  try {
    items = (await api("/api/worklist?modality=US&status=SCHEDULED,STARTED")).items;
  } catch (error) {
    log(`worklist not available: ${error.message}`);
    return;
  }
  for (const item of items) {
    const option = document.createElement("option");
    option.value = String(item.id);
    const details = [item.patient_id, item.age, item.accession && `acc. ${item.accession}`, item.sps_description];
    option.textContent = `${item.patient_name} (${details.filter(Boolean).join(", ")})`;
    $("#worklist").append(option);
  }
}

$("#start").addEventListener("submit", start);
$("#upload").addEventListener("click", () =>
  stowUpload([...$("#files").files], $("#progress"), $("#upload-status")).catch(showError),
);

const resumed = new URLSearchParams(location.search).get("session");
const resumedToken = resumed && sessionStorage.getItem(`telehealth:${resumed}`);
if (resumedToken) goLive(resumed, resumedToken, null);
else loadWorklist();
