// The Modality Worklist: scheduled procedure steps from /api/worklist, filtered like the MWL
// C-FIND (worklist.read), and for schedulers (worklist.write) a form for a new step and the
// start / complete / cancel changes. A clinic sees only the steps assigned to it; the API
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

const api = jsonApi(FORBIDDEN);
const { act, onSubmit } = changes(refresh);

function dicomDate(isoDate) {
  return isoDate.replaceAll("-", "");
}

function startText(item) {
  const d = item.start_date;
  const t = item.start_time;
  const day = `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}`;
  return t ? `${day} ${t.slice(0, 2)}:${t.slice(2, 4)}` : day;
}

function actionButton(td, item, action) {
  const [label, allowed] = ACTIONS[action];
  if (!allowed.includes(item.status)) return;
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", () =>
    act(button, () => api(`/api/worklist/${item.id}/${action}`, { method: "POST" })),
  );
  td.append(button);
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
    if (canWrite) for (const action of Object.keys(ACTIONS)) actionButton(td, item, action);
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
    onSubmit("#new-step", schedule);
    document.querySelector("#schedule").hidden = false;
  }
  await firstShow(refresh);
}

main();
