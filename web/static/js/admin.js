// Administration: users (roles, enabling, password resets), API tokens, the DICOM allow-list and
// peers (./peers.js), the audit trail (search and verification) and the system's state
// (./system.js), all on /api/admin (the `admin` permission) and /api/forward/metrics. Other
// accounts are told so and the page asks nothing of the API.

import { account, cell, changes, firstShow, installHeader, jsonApi, showError } from "./nav.js";
import { patientsSection } from "./patients.js";
import { peersSection } from "./peers.js";
import { showSystem } from "./system.js";

const FORBIDDEN = "Administrators only: your account may not use the administration pages.";
const AE_PRINCIPAL_PREFIX = "ae:"; // the principal of an AE that acts as a role, not a user

const api = jsonApi(FORBIDDEN);
const { act, onSubmit } = changes(refresh);
let peers = null; // the peers section, once the account is known to be an administrator
let patients = null; // the patient changes section, likewise

function send(method, path, body) {
  return api(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function button(td, label, run) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  element.addEventListener("click", () => act(element, run));
  td.append(element);
}

function showOnce(selector, owner, secret) {
  const box = document.querySelector(selector);
  box.querySelector("[data-for]").textContent = owner;
  box.querySelector("[data-secret]").textContent = secret;
  const copied = box.querySelector("[data-copied]");
  if (copied) copied.textContent = "";
  box.hidden = false;
}

// Users

function renderUsers(users) {
  const body = document.querySelector("#user-list tbody");
  body.replaceChildren();
  const select = document.querySelector("#issue-token select[name=username]");
  const chosen = select.value;
  select.replaceChildren();
  for (const user of users) {
    const row = body.insertRow();
    row.dataset.user = user.username;
    const path = `/api/admin/users/${encodeURIComponent(user.username)}`;
    cell(row, user.username);
    roleChoice(cell(row, "", "role"), user, path);
    cell(row, when(user.created_at));
    cell(row, user.disabled ? "disabled" : "active", `state ${user.disabled ? "disabled" : "active"}`);
    const td = cell(row, "");
    button(td, user.disabled ? "Enable" : "Disable", () => send("POST", `${path}/disable`, { disabled: !user.disabled }));
    button(td, "Reset password", () => resetPassword(user.username, path));
    if (!user.disabled) select.append(new Option(user.username, user.username, false, user.username === chosen));
  }
}

// The roles a user may be given: those of the add-user form.
function roleChoice(td, user, path) {
  const choice = document.createElement("select");
  choice.setAttribute("aria-label", `Role of ${user.username}`);
  for (const option of document.querySelector("#add-user [name=role]").options) {
    choice.append(new Option(option.value, option.value, false, option.value === user.role));
  }
  choice.addEventListener("change", () => {
    const role = choice.value;
    if (!confirm(`Give ${user.username} the role ${role} (now ${user.role})?`)) {
      choice.value = user.role;
      return;
    }
    act(choice, () => send("PUT", `${path}/role`, { role }));
  });
  td.append(choice);
}

async function resetPassword(username, path) {
  if (!confirm(`Reset the password of ${username}? The current one stops working, and its sessions end.`)) return;
  const answer = await send("POST", `${path}/password`);
  showOnce("#password", answer.username, answer.password);
}

async function addUser(form, element) {
  const answer = await send("POST", "/api/admin/users", { username: form.get("username").trim(), role: form.get("role") });
  element.reset();
  if (answer.password) showOnce("#password", answer.username, answer.password);
}

// Tokens

function tokenState(token) {
  if (token.revoked_at) return "revoked";
  if (token.expires_at && token.expires_at * 1000 < Date.now()) return "expired";
  return "active";
}

function renderTokens(tokens) {
  const body = document.querySelector("#token-list tbody");
  body.replaceChildren();
  for (const token of tokens) {
    const state = tokenState(token);
    const row = body.insertRow();
    row.dataset.token = token.id;
    cell(row, String(token.id));
    cell(row, token.username);
    cell(row, token.label);
    cell(row, token.scopes || "the role's permissions");
    cell(row, when(token.created_at));
    cell(row, token.expires_at ? when(token.expires_at) : "never");
    cell(row, state, `state ${state}`);
    const td = cell(row, "");
    if (state === "active") button(td, "Revoke", () => send("DELETE", `/api/admin/tokens/${token.id}`));
  }
}

async function issueToken(form, element) {
  const scopes = form.get("scopes").split(/[\s,]+/).filter(Boolean);
  const request = { username: form.get("username"), days: Number(form.get("days")), label: form.get("label").trim() };
  if (scopes.length) request.scopes = scopes;
  const answer = await send("POST", "/api/admin/tokens", request);
  element.querySelector("[name=label]").value = "";
  element.querySelector("[name=scopes]").value = "";
  showOnce("#secret", `#${answer.id} for ${request.username}`, answer.token);
}

async function copySecret() {
  const box = document.querySelector("#secret");
  const secret = box.querySelector("[data-secret]");
  const copied = box.querySelector("[data-copied]");
  try {
    await navigator.clipboard.writeText(secret.textContent);
    copied.textContent = "copied";
  } catch {
    getSelection().selectAllChildren(secret); // no clipboard access: the user copies it
    copied.textContent = "selected: copy it with Ctrl+C";
  }
}

// The DICOM allow-list

let editing = null; // the entry the form was filled from: its version, certificate and note

function renderAllowList(entries) {
  const body = document.querySelector("#ae-list tbody");
  body.replaceChildren();
  for (const entry of entries) {
    const row = body.insertRow();
    row.dataset.ae = entry.ae_title;
    cell(row, entry.ae_title);
    cell(row, entry.services.join(" ") || "C-ECHO only", "services");
    cell(row, entry.principal.startsWith(AE_PRINCIPAL_PREFIX) ? "(the AE itself)" : entry.principal);
    cell(row, entry.effective_role ?? "(no such user)");
    cell(row, entry.address ?? "any");
    cell(row, entry.note);
    cell(row, String(entry.version), "version");
    cell(row, entry.updated_at ? `${when(entry.updated_at)} by ${entry.updated_by || "(unknown)"}` : "");
    const td = cell(row, "");
    button(td, "Edit", async () => fillAllowForm(entry));
    button(td, "Remove", () =>
      send("DELETE", `/api/admin/ae/${encodeURIComponent(entry.ae_title)}?version=${entry.version}`),
    );
  }
  if (!entries.length) cell(body.insertRow(), "No AE title is listed: calling AEs get C-ECHO only.").colSpan = 9;
}

function fillAllowForm(entry) {
  editing = entry;
  const form = document.querySelector("#allow-ae");
  form.elements.ae_title.value = entry.ae_title;
  for (const box of form.querySelectorAll("[name=services]")) box.checked = entry.services.includes(box.value);
  form.elements.user.value = entry.role ? "" : entry.principal;
  form.elements.role.value = entry.role ?? "";
  form.elements.address.value = entry.address ?? "";
  form.scrollIntoView();
}

async function allowAe(form, element) {
  const title = form.get("ae_title").trim();
  const request = { services: form.getAll("services") };
  for (const key of ["user", "role", "address"]) {
    const value = form.get(key).trim();
    if (value) request[key] = value;
  }
  // The version read guards the change: a new title must not be listed yet, an edited one
  // must not have changed since it was read.
  request.version = editing?.ae_title === title ? editing.version : 0;
  if (editing?.ae_title === title) {
    if (editing.certificate) request.certificate = editing.certificate;
    request.note = editing.note;
  }
  await send("PUT", `/api/admin/ae/${encodeURIComponent(title)}`, request);
  editing = null;
  element.reset();
}

// The audit trail: a search shown a page at a time, newest first. `trail` holds the search's
// parameters and the cursor of each page shown so far (null: the newest).

const trail = { params: new URLSearchParams(), cursors: [null] };
const lookup = changes(async () => {}); // a search changes nothing to show again

function searchParameters(form) {
  const params = new URLSearchParams();
  for (const name of ["who", "action", "outcome", "patient", "study", "limit"]) {
    const value = form.get(name).trim();
    if (value) params.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = form.get(name); // the browser's local time: sent as the instant it names
    if (value) params.set(name, new Date(value).toISOString());
  }
  return params;
}

async function showAuditPage() {
  const params = new URLSearchParams(trail.params);
  const cursor = trail.cursors.at(-1);
  if (cursor !== null) params.set("before", cursor);
  const page = await api(`/api/admin/audit?${params}`);
  renderAudit(page.records);
  const older = document.querySelector("#audit-older");
  older.hidden = page.next === null;
  older.dataset.before = page.next ?? "";
  document.querySelector("#audit-newer").hidden = trail.cursors.length === 1;
}

function detailSummary(detail) {
  if (detail === null) return "";
  if (typeof detail !== "object") return String(detail);
  const text = Object.entries(detail)
    .map(([key, value]) => `${key}: ${typeof value === "object" && value !== null ? JSON.stringify(value) : value}`)
    .join(", ");
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

function renderAudit(records) {
  const body = document.querySelector("#audit-list tbody");
  body.replaceChildren();
  for (const record of records) {
    const row = body.insertRow();
    row.dataset.seq = record.seq;
    cell(row, String(record.seq));
    cell(row, when(record.at)).title = record.time;
    cell(row, record.who, "who");
    cell(row, record.role);
    cell(row, record.action, "action");
    cell(row, record.outcome, `outcome ${record.outcome}`);
    cell(row, record.patient, "uid");
    cell(row, record.study, "uid");
    const detail = cell(row, detailSummary(record.detail), "detail");
    if (record.detail !== null) detail.title = JSON.stringify(record.detail, null, 1);
  }
  if (!records.length) cell(body.insertRow(), "No audit record matches.").colSpan = 9;
}

async function searchAudit(form) {
  trail.params = searchParameters(form);
  trail.cursors = [null];
  await showAuditPage();
}

function pageAudit(control, step) {
  lookup.act(control, async () => {
    if (step === "older") trail.cursors.push(Number(control.dataset.before));
    else trail.cursors.pop();
    await showAuditPage();
  });
}

async function verifyAudit() {
  const verdict = await api("/api/admin/audit/verify");
  const line = document.querySelector("#verdict");
  line.hidden = false;
  line.className = verdict.ok ? "ok" : "error";
  line.textContent = verdict.ok
    ? `Intact: ${verdict.records} record(s), the hash chain and the signed head check out.`
    : `Not intact: ${verdict.problems.length} problem(s) in ${verdict.records} record(s).`;
  const list = document.querySelector("#problems");
  list.replaceChildren(...verdict.problems.map((problem) => Object.assign(document.createElement("li"), { textContent: problem })));
}

async function refresh() {
  const [users, tokens, allowList] = await Promise.all([
    api("/api/admin/users"),
    api("/api/admin/tokens"),
    api("/api/admin/ae"),
    peers.refresh(),
    patients.refresh(),
  ]);
  renderUsers(users);
  renderTokens(tokens);
  renderAllowList(allowList);
}

async function main() {
  installHeader();
  const me = await account();
  if (!me?.scopes.includes("admin")) {
    showError("#error", FORBIDDEN);
    return;
  }
  onSubmit("#add-user", addUser);
  onSubmit("#issue-token", issueToken);
  onSubmit("#allow-ae", allowAe);
  peers = peersSection(api);
  patients = patientsSection(api);
  document.querySelector("#secret [data-copy]").addEventListener("click", copySecret);
  const verify = document.querySelector("#verify");
  verify.addEventListener("click", () => act(verify, verifyAudit));
  lookup.onSubmit("#audit-search", searchAudit);
  for (const step of ["older", "newer"]) {
    const control = document.querySelector(`#audit-${step}`);
    control.addEventListener("click", () => pageAudit(control, step));
  }
  const again = document.querySelector("#system-refresh");
  again.addEventListener("click", () => lookup.act(again, () => showSystem(api)));
  await firstShow(() => Promise.all([refresh(), showAuditPage(), showSystem(api)]));
}

main();
