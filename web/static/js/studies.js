// Study browser: QIDO-RS search by patient, accession, date range and modality.

import { DICOMWEB, first, formatDate, personName, qido, studyPage, values } from "./dicom.js";
import { installHeader, showError } from "./nav.js";

const PAGE_SIZE = Number(new URLSearchParams(location.search).get("limit")) || 50;
const form = document.getElementById("search");
const results = document.getElementById("results");
const status = document.getElementById("status");
const more = document.getElementById("more");
let shown = 0;

installHeader();
form.addEventListener("submit", (e) => {
  e.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v.trim()) params.set(k, v.trim());
  history.pushState(null, "", `?${params}`);
  search();
});
form.addEventListener("reset", () => setTimeout(() => form.requestSubmit()));
more.addEventListener("click", () => search(shown));
window.addEventListener("popstate", () => {
  fillForm();
  search();
});
fillForm();
search();

function fillForm() {
  const params = new URLSearchParams(location.search);
  for (const element of form.elements) {
    if (element.name) element.value = params.get(element.name) || "";
  }
}

// Free text gets wildcards so "doe" finds "DOE^JANE"; typed wildcards are kept as they are.
function wildcard(text) {
  return /[*?]/.test(text) ? text : `*${text}*`;
}

function queryParams() {
  const p = new URLSearchParams(location.search);
  const date = (v) => (v || "").replaceAll("-", "");
  const range = p.get("from") || p.get("to") ? `${date(p.get("from"))}-${date(p.get("to"))}` : "";
  return {
    PatientName: p.get("PatientName") ? wildcard(p.get("PatientName")) : "",
    PatientID: p.get("PatientID") || "",
    AccessionNumber: p.get("AccessionNumber") || "",
    StudyDate: range,
    ModalitiesInStudy: p.get("ModalitiesInStudy") || "",
    StudyInstanceUID: p.get("study") || "",
    fuzzymatching: p.get("PatientName") ? "true" : "",
    includefield: ["ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
    limit: String(PAGE_SIZE),
  };
}

async function search(offset = 0) {
  status.textContent = "Searching…";
  document.getElementById("error").hidden = true;
  try {
    const rows = await qido("/studies", { ...queryParams(), offset: offset ? String(offset) : "" });
    if (offset) results.append(...rows.map(studyRow));
    else results.replaceChildren(...rows.map(studyRow));
    shown = offset + rows.length;
    more.hidden = rows.length < PAGE_SIZE;
    status.textContent = shown ? `${shown}${more.hidden ? "" : "+"} studies` : "No studies match.";
  } catch (error) {
    status.textContent = "";
    showError("#error", error);
  }
}

function studyRow(ds) {
  const row = document.getElementById("study-row").content.firstElementChild.cloneNode(true);
  const uid = first(ds, "StudyInstanceUID");
  const modalities = values(ds, "ModalitiesInStudy");
  const href = studyPage(uid, modalities);
  const patientId = first(ds, "PatientID") || "";
  const name = personName(first(ds, "PatientName")) || "(no name)";
  row.dataset.study = uid;
  row.querySelector(".thumb").href = href;
  row.querySelector("img").src = `${DICOMWEB}/studies/${uid}/thumbnail`;
  row.querySelector("img").addEventListener("error", (e) => e.target.removeAttribute("src"), { once: true });
  const title = row.querySelector(".title");
  title.href = href;
  title.textContent = `${name} · ${first(ds, "StudyDescription") || "study"}`;
  row.querySelector(".meta").textContent = [
    formatDate(first(ds, "StudyDate")),
    first(ds, "AccessionNumber") && `Acc ${first(ds, "AccessionNumber")}`,
  ]
    .filter(Boolean)
    .join(" · ");
  const patient = row.querySelector(".patient");
  patient.textContent = `Patient ${patientId || "?"}: all studies`;
  patient.href = `/studies?PatientID=${encodeURIComponent(patientId)}`;
  row.querySelector(".modalities").textContent = modalities.join(", ");
  row.querySelector(".series").textContent = `${first(ds, "NumberOfStudyRelatedSeries") ?? "?"} series, ${first(ds, "NumberOfStudyRelatedInstances") ?? "?"} instances`;
  const slides = row.querySelector(".slides");
  if (modalities.includes("SM")) countSlides(uid, slides);
  return row;
}

// A slide is a series of VOLUME images; label- or overview-only series are not counted.
async function countSlides(uid, target) {
  try {
    const rows = await qido(`/studies/${uid}/instances`, { Modality: "SM", ImageType: "*VOLUME*", includefield: "0020000E" });
    const count = new Set(rows.map((r) => first(r, "SeriesInstanceUID"))).size;
    target.textContent = `${count} slide${count === 1 ? "" : "s"}`;
  } catch {
    target.textContent = "";
  }
}
