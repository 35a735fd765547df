// The Modality Worklist: scheduled procedure steps from /api/worklist, filtered like the MWL
// C-FIND (worklist.read), and for schedulers (worklist.write) a form for a new step, the same
// form to edit an open step, and the start / complete / cancel changes. A clinic sees only the steps assigned to it; the API
// decides that. Accounts without worklist.read are told so and the page asks nothing of the API.

import { account, cell, changes, firstShow, installHeader, jsonApi, showError } from "./nav.js";

const FORBIDDEN = "Your account may not see the worklist.";
const FILTERS = ["status", "modality", "date", "patient_name", "patient_id", "accession"];
const LIMIT = "500";
// action -> (its button's label, the statuses that allow it): as hub/worklist/states.py.
const ACTIONS = {
  start: ["Start", ["SCHEDULED"]],
  complete: ["Complete", ["STARTED"]],
  cancel: ["Cancel", ["SCHEDULED", "STARTED"]],
};
const EDITABLE = ["SCHEDULED", "STARTED"];

const api = jsonApi(FORBIDDEN);
const { act, onSubmit } = changes(refresh);

function dicomDate(isoDate) {
  return isoDate.replaceAll("-", "");
}

function isoDate(dicom) {
  return dicom ? `${dicom.slice(0, 4)}-${dicom.slice(4, 6)}-${dicom.slice(6, 8)}` : "";
}

function startText(item) {
  const day = isoDate(item.start_date);
  const t = item.start_time;
  return t ? `${day} ${t.slice(0, 2)}:${t.slice(2, 4)}` : day;
}

function button(td, label, onClick) {
  const control = document.createElement("button");
  control.type = "button";
  control.textContent = label;
  control.addEventListener("click", () => onClick(control));
  td.append(control);
}

function actionButton(td, item, action) {
  const [label, allowed] = ACTIONS[action];
  if (!allowed.includes(item.status)) return;
  button(td, label, (control) =>
    act(control, () => api(`/api/worklist/${item.id}/${action}`, { method: "POST" })),
  );
}

function renderSteps(items, canWrite) {
  const body = document.querySelector("#steps tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = body.insertRow();
    row.dataset.item = item.id;
    row.dataset.accession = item.accession;
    cell(row, item.patient_name.replaceAll("^", " ").trim(), "patient");
    cell(row, item.patient_id);
    cell(row, item.accession, "accession");
    cell(row, item.modality);
    cell(row, item.requested_procedure_description || item.sps_description);
    cell(row, item.station_ae);
    cell(row, startText(item));
    cell(row, item.status, `status ${item.status.toLowerCase()}`);
    cell(row, item.clinic, "clinic");
    const td = cell(row, "");
    if (!canWrite) continue;
    if (EDITABLE.includes(item.status)) button(td, "Edit", () => startEditing(item));
    for (const action of Object.keys(ACTIONS)) actionButton(td, item, action);
  }
}

function filterQuery() {
  const form = new FormData(document.querySelector("#filter"));
  const query = new URLSearchParams({ limit: LIMIT });
  for (const key of FILTERS) {
    const value = form.get(key).trim();
    if (value) query.set(key, key === "date" ? dicomDate(value) : value);
  }
  return query;
}

let canWrite = false;

async function refresh() {
  const { items } = await api(`/api/worklist?${filterQuery()}`);
  renderSteps(items, canWrite);
  document.querySelector("#status").textContent = items.length
    ? `${items.length} step(s) shown · updated ${new Date().toLocaleTimeString()}`
    : "No procedure steps match.";
}

// The form's fields as NewItem fields: empty ones are left to the hub's defaults.
function newStep(form) {
  const body = {};
  for (const [key, raw] of form.entries()) {
    const value = raw.trim();
    if (value) body[key] = key === "birth_date" ? dicomDate(value) : value;
  }
  return body;
}

async function schedule(data, element) {
  await api("/api/worklist", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(newStep(data)),
  });
  element.reset();
}

// Editing: the form shows the step; saving sends only the fields changed in it.

let editing = null;

function shownValues(item) {
  const t = item.start_time;
  return {
    patient_name: item.patient_name,
    patient_id: item.patient_id,
    birth_date: isoDate(item.birth_date),
    sex: item.sex,
    modality: item.modality,
    accession: item.accession,
    requested_procedure_description: item.requested_procedure_description,
    station_ae: item.station_ae,
    start: `${isoDate(item.start_date)}T${t.slice(0, 2) || "00"}:${t.slice(2, 4) || "00"}`,
    clinic: item.clinic ?? "",
  };
}

function showMode(item) {
  const form = document.querySelector("#new-step");
  document.querySelector("#schedule h2").textContent = item
    ? `Edit procedure step ${item.accession}`
    : "Schedule a procedure step";
  form.querySelector("button[type=submit]").textContent = item ? "Save changes" : "Schedule";
  document.querySelector("#stop-editing").hidden = !item;
}

function startEditing(item) {
  editing = item;
  const form = document.querySelector("#new-step");
  for (const [name, value] of Object.entries(shownValues(item))) form.elements[name].value = value;
  showMode(item);
  form.scrollIntoView({ block: "nearest" });
}

function stopEditing() {
  editing = null;
  document.querySelector("#new-step").reset();
  showMode(null);
}

async function save(data, element) {
  if (!editing) return schedule(data, element);
  const shown = shownValues(editing);
  const body = {};
  for (const [key, raw] of data.entries()) {
    const value = raw.trim();
    if (value !== shown[key]) body[key] = key === "birth_date" ? dicomDate(value) : value;
  }
  if (Object.keys(body).length) {
    await api(`/api/worklist/${editing.id}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }
  stopEditing();
}

async function main() {
  installHeader();
  const me = await account();
  if (!me?.scopes.includes("worklist.read")) {
    showError("#error", FORBIDDEN);
    return;
  }
  canWrite = me.scopes.includes("worklist.write");
  onSubmit("#filter", () => {}); // act() shows the list again with the new filter
  if (canWrite) {
    onSubmit("#new-step", save);
    document.querySelector("#stop-editing").addEventListener("click", stopEditing);
    document.querySelector("#schedule").hidden = false;
  }
  await firstShow(refresh);
}

main();
