// Chunked, resumable upload, then the conversion or ingest job followed over server-sent events.

import { openStudy } from "./dicom.js";
import { installHeader, showError } from "./nav.js";

const RETRIES = 5;
const drop = document.getElementById("drop");
const picker = document.getElementById("files");
const transfers = document.getElementById("transfers");

installHeader();
loadWorklist();
picker.addEventListener("change", () => start([...picker.files]));
drop.addEventListener("dragover", (e) => {
  e.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  start([...e.dataTransfer.files]);
});

// Scheduled slide orders, so the uploader picks the order instead of typing its identifiers.
async function loadWorklist() {
  const select = document.querySelector("select[name=worklist_item]");
  // Ask only when the signed-in role may read the worklist, so the page logs no refusals.
  const me = await fetch("/api/me");
  const scopes = me.ok ? (await me.json()).scopes : [];
  if (!scopes.includes("worklist.read")) {
    select.closest("label").hidden = true;
    return;
  }
  const response = await fetch("/api/worklist?status=SCHEDULED&limit=200");
  if (!response.ok) {
    select.closest("label").hidden = true;
    return;
  }
  const { items } = await response.json();
  for (const item of items) {
    const option = document.createElement("option");
    option.value = item.id;
    option.textContent = [
      `${item.patient_name.replaceAll("^", " ")} (${item.patient_id})`,
      item.accession && `Acc ${item.accession}`,
      item.modality,
      item.requested_procedure_description,
    ]
      .filter(Boolean)
      .join(" · ");
    select.append(option);
  }
  select.addEventListener("change", () => {
    for (const input of document.querySelectorAll("#ids input")) input.disabled = Boolean(select.value);
  });
}

async function start(files) {
  if (!files.length) return;
  document.getElementById("error").hidden = true;
  const fields = Object.fromEntries(new FormData(document.getElementById("ids")));
  try {
    const jobs = await Promise.all(files.map((file) => transfer(file, fields)));
    const studies = [...new Set(jobs.map((j) => j.study_uid))];
    if (studies.length === 1) await openStudy(studies[0]);
  } catch (error) {
    showError("#error", error);
  }
}

async function api(method, url, body, extra = {}) {
  const response = await fetch(url, {
    method,
    body,
    headers: body && !(body instanceof Blob) ? { "Content-Type": "application/json" } : {},
    ...extra,
  });
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : {};
  if (!response.ok) {
    const error = new Error(data.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// One file: create (or resume) the upload, send chunks, complete, follow the job.
async function transfer(file, fields) {
  const view = document.getElementById("transfer").content.firstElementChild.cloneNode(true);
  view.querySelector(".name").textContent = file.name;
  transfers.append(view);
  const upload = await createOrResume(file, fields);
  await sendChunks(file, upload, view);
  const { job } = await api("POST", `/api/uploads/${upload.id}/complete`);
  localStorage.removeItem(resumeKey(file));
  view.querySelector(".job-text").textContent = job.kind === "convert" ? "queued" : "storing";
  const finished = await followJob(job, view);
  if (finished.status !== "done") throw new Error(`${file.name}: ${finished.error}`);
  view.querySelector(".result").textContent = `Stored ${finished.instances} instance(s).`;
  return finished;
}

function resumeKey(file) {
  return `tessera-upload:${file.name}:${file.size}:${file.lastModified}`;
}

async function createOrResume(file, fields) {
  const known = localStorage.getItem(resumeKey(file));
  if (known) {
    try {
      const upload = await api("GET", `/api/uploads/${known}`);
      if (upload.status === "receiving" || upload.status === "complete") return upload;
    } catch {
      // gone: start again
    }
  }
  const upload = await api("POST", "/api/uploads", JSON.stringify({ filename: file.name, size: file.size, ...fields }));
  localStorage.setItem(resumeKey(file), upload.id);
  return upload;
}

async function sendChunks(file, upload, view) {
  let offset = upload.received;
  let failures = 0;
  const started = performance.now();
  const startOffset = offset;
  while (offset < file.size) {
    const end = Math.min(file.size, offset + upload.chunk_size);
    try {
      const sent = await putChunk(`/api/uploads/${upload.id}?offset=${offset}`, file.slice(offset, end), (loaded) =>
        showUpload(view, offset + loaded, file.size, started, startOffset),
      );
      offset = sent.received;
      failures = 0;
    } catch (error) {
      if (++failures > RETRIES || (error.status && error.status !== 409 && error.status < 500)) throw error;
      await new Promise((r) => setTimeout(r, 500 * 2 ** failures));
      offset = (await api("GET", `/api/uploads/${upload.id}`)).received; // resume where the server is
    }
    showUpload(view, offset, file.size, started, startOffset);
  }
  showUpload(view, file.size, file.size, started, startOffset);
}

// XMLHttpRequest, not fetch: it reports upload progress within a chunk.
function putChunk(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status === 200) return resolve(xhr.response);
      const error = new Error((xhr.response && xhr.response.detail) || `upload failed: ${xhr.status}`);
      error.status = xhr.status;
      reject(error);
    };
    xhr.onerror = () => reject(new Error("connection lost"));
    xhr.send(blob);
  });
}

function showUpload(view, done, total, started, startOffset) {
  const bar = view.querySelector("progress.upload");
  bar.value = total ? (100 * done) / total : 100;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? (done - startOffset) / seconds : 0;
  view.querySelector(".upload-text").textContent = `${Math.floor(bar.value)}% · ${mb(done)} of ${mb(total)} MB${rate ? ` · ${mb(rate)} MB/s` : ""}`;
}

function mb(bytes) {
  return (bytes / 1048576).toFixed(1);
}

function followJob(job, view) {
  return new Promise((resolve) => {
    const events = new EventSource(`/api/jobs/${job.id}/events`);
    events.addEventListener("progress", (e) => {
      const state = JSON.parse(e.data);
      showJob(view, state);
      if (state.finished) {
        events.close();
        resolve(state);
      }
    });
    // The stream ends after the final event; a broken one is picked up by polling.
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) poll(job.id, view).then(resolve);
    };
  });
}

async function poll(jobId, view) {
  for (;;) {
    const state = await api("GET", `/api/jobs/${jobId}`);
    showJob(view, state);
    if (state.finished) return state;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function showJob(view, job) {
  const bar = view.querySelector("progress.job");
  bar.value = job.status === "done" ? 100 : job.percent;
  const parts = [job.status];
  if (job.frames_total) parts.push(`${Math.floor(job.percent)}%`, `${job.frames_done}/${job.frames_total} frames`);
  if (job.eta_seconds && job.status === "running") parts.push(`about ${Math.ceil(job.eta_seconds)} s left`);
  if (job.error) parts.push(job.error);
  view.querySelector(".job-text").textContent = parts.join(" · ");
  view.dataset.status = job.status;
}
