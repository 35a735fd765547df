// The forwarding targets and rules, edited on the forwarding page by administrators
// (forward.admin): the lists with edit and delete, a target form with a Test button (C-ECHO for
// DIMSE, a one-study search for DICOMweb), a rule form with a dry run over the newest stored
// objects. Every change sends the version the page read; an entry changed elsewhere meanwhile is
// refused (409) and the page asks for a reload. Accounts without forward.admin never see the
// editor and the page asks nothing of these routes for them; forwarding.js shows the queue.

import { account, cell, showError } from "./nav.js";

const FORBIDDEN = "Your account may not change the forwarding targets and rules.";
const MATCH_KEYS = ["modality", "sop_class", "door", "calling_ae"];
const MATCH_NAMES = { modality: "modality", sop_class: "SOP class", door: "door", calling_ae: "calling AE" };
const KIND_NAMES = { dimse: "DIMSE", stow: "DICOMweb" };

let config = { targets: [], rules: [] };
const echoes = new Map(); // target name -> the last Test answer, kept across reloads
const editing = { target: null, rule: null }; // the entries the forms show, as read

// -- the API -----------------------------------------------------------------------------

// A call to /api/forward; a refusal becomes an Error with the problem's title and detail.
async function call(method, path, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({}));
  if (response.ok) return answer;
  throw refusal(response.status, answer, path);
}

function refusal(status, problem, path) {
  if (status === 403) return new Error(FORBIDDEN);
  if (status === 409 && problem.conflict === "version") {
    return new Error(
      `Not saved: this entry was changed elsewhere since the page read it (${problem.detail}). ` +
        "Press Reload to see it as it is now, then make your change again.",
    );
  }
  const reason = [problem.title, problem.detail].filter(Boolean).join(": ");
  return new Error(reason || `${path}: HTTP ${status}`);
}

const entry = (kind, name) => `/api/forward/${kind}/${encodeURIComponent(name)}`;

// -- errors: the page's error area, shared with the queue (which clears only its own) --------

function fail(error) {
  document.querySelector("#error").dataset.from = "editor";
  showError("#error", error);
}

function clearError() {
  const box = document.querySelector("#error");
  if (box.dataset.from === "editor") box.hidden = true;
}

async function act(control, run) {
  control.disabled = true;
  try {
    await run();
    clearError();
  } catch (error) {
    fail(error);
  } finally {
    control.disabled = false;
  }
}

function button(td, label, run) {
  const control = document.createElement("button");
  control.type = "button";
  control.textContent = label;
  control.addEventListener("click", () => act(control, run));
  td.append(control);
}

// -- the lists ---------------------------------------------------------------------------

async function reload() {
  config = await call("GET", "/api/forward/targets");
  renderTargets();
  renderRules();
  renderRuleTargets();
  const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
  document.querySelector("#editor-status").textContent =
    `${count(config.targets.length, "target")}, ${count(config.rules.length, "rule")} · ` +
    `revision ${config.revision} read ${new Date().toLocaleTimeString()}`;
}

function address(target) {
  return target.type === "stow" ? target.url : `${target.called_ae}@${target.host}:${target.port}`;
}

function renderTargets() {
  const body = document.querySelector("#config-targets tbody");
  body.replaceChildren();
  for (const target of config.targets) {
    const row = body.insertRow();
    row.dataset.target = target.name;
    cell(row, target.name, "name");
    cell(row, KIND_NAMES[target.type] || target.type, "kind");
    cell(row, address(target), "address");
    cell(row, String(target.version ?? ""), "version");
    showEcho(cell(row, "", "echo"), echoes.get(target.name));
    const td = cell(row, "");
    button(td, "Test", () => testTarget(target.name));
    button(td, "Edit", async () => edit("target", target));
    button(td, "Delete", () => removeEntry("target", target));
  }
}

function matchText(match) {
  const parts = MATCH_KEYS.filter((key) => match[key]?.length).map(
    (key) => `${MATCH_NAMES[key]} ${match[key].join(", ")}`,
  );
  return parts.length ? parts.join(" · ") : "everything";
}

function renderRules() {
  const body = document.querySelector("#config-rules tbody");
  body.replaceChildren();
  for (const rule of config.rules) {
    const row = body.insertRow();
    row.dataset.rule = rule.name;
    cell(row, rule.name, "name");
    cell(row, matchText(rule.match), "match");
    cell(row, rule.targets.join(", "), "targets");
    cell(row, String(rule.version ?? ""), "version");
    const td = cell(row, "");
    button(td, "Edit", async () => edit("rule", rule));
    button(td, "Delete", () => removeEntry("rule", rule));
  }
}

async function removeEntry(what, item) {
  if (!confirm(`Remove the ${what} ${item.name}?`)) return;
  await call("DELETE", `${entry(`${what}s`, item.name)}?version=${item.version}`);
  if (editing[what]?.name === item.name) stopEditing(what);
  await reload();
}

// -- targets -----------------------------------------------------------------------------

function showEcho(element, answer) {
  element.classList.remove("ok", "failed");
  element.textContent = "";
  if (!answer) return;
  element.classList.add(answer.ok ? "ok" : "failed");
  element.textContent = answer.ok ? `OK: ${answer.detail}` : `Failed: ${answer.detail}`;
}

async function testTarget(name) {
  const answer = await call("POST", `${entry("targets", name)}/echo`);
  echoes.set(name, answer);
  const row = document.querySelector(`#config-targets tr[data-target="${CSS.escape(name)}"]`);
  if (row) showEcho(row.querySelector("td.echo"), answer);
  if (editing.target?.name === name) showEcho(targetForm().querySelector("[data-echo]"), answer);
}

const targetForm = () => document.querySelector("#target-form");

// Only the fields of the chosen kind take part in the form (checked, sent).
function showKind(kind) {
  for (const fieldset of targetForm().querySelectorAll("fieldset[data-kind]")) {
    const shown = fieldset.dataset.kind === kind;
    fieldset.hidden = !shown;
    fieldset.disabled = !shown;
  }
  const form = targetForm();
  for (const name of ["called_ae", "host", "port"]) form.elements[name].required = kind === "dimse";
  form.elements.url.required = kind === "stow";
}

function fillTarget(form, target) {
  const values = {
    name: target.name,
    type: target.type,
    version: target.version ?? "",
    called_ae: target.called_ae ?? "",
    host: target.host ?? "",
    port: target.port ?? "",
    calling_ae: target.calling_ae ?? "",
    url: target.url ?? "",
  };
  for (const [name, value] of Object.entries(values)) form.elements[name].value = value;
}

function showTargetExtras(form, target) {
  form.querySelector("[data-test]").disabled = !target;
  showEcho(form.querySelector("[data-echo]"), target && echoes.get(target.name));
  showKind(form.elements.type.value);
}

function targetBody(data) {
  const text = (key) => String(data.get(key) ?? "").trim();
  const type = text("type");
  const body = { type, version: Number(text("version")) };
  if (type === "stow") {
    body.url = text("url");
    if (text("token")) body.token = text("token"); // left out: the one set stays
    return body;
  }
  Object.assign(body, { host: text("host"), port: Number(text("port")), called_ae: text("called_ae") });
  if (text("calling_ae")) body.calling_ae = text("calling_ae");
  const shown = editing.target; // what the form does not show stays as it was
  if (shown?.type === "dimse") {
    if (shown.tls) body.tls = Object.fromEntries(Object.entries(shown.tls).filter(([, v]) => v != null));
    if (shown.convert_uncompressed) body.convert_uncompressed = true;
  }
  return body;
}

async function saveTarget(form) {
  const data = new FormData(form);
  await save("target", String(data.get("name")).trim(), targetBody(data));
}

// -- rules -------------------------------------------------------------------------------

const ruleForm = () => document.querySelector("#rule-form");

// One checkbox per target; those ticked stay ticked when the list is read again.
function renderRuleTargets() {
  const fieldset = ruleForm().querySelector("[data-targets]");
  const ticked = new Set(new FormData(ruleForm()).getAll("targets"));
  fieldset.replaceChildren(fieldset.querySelector("legend"));
  for (const target of config.targets) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    Object.assign(box, { type: "checkbox", name: "targets", value: target.name, checked: ticked.has(target.name) });
    label.append(box, ` ${target.name}`);
    fieldset.append(label);
  }
  if (!config.targets.length) fieldset.append("No targets yet: add one above.");
}

function fillRule(form, rule) {
  form.elements.name.value = rule.name;
  form.elements.version.value = rule.version ?? "";
  for (const key of MATCH_KEYS) form.elements[key].value = (rule.match[key] || []).join(" ");
  for (const box of form.querySelectorAll("[name=targets]")) box.checked = rule.targets.includes(box.value);
}

function ruleOf(data) {
  const match = {};
  for (const key of MATCH_KEYS) {
    const values = String(data.get(key) ?? "").split(/[\s,]+/).filter(Boolean);
    if (values.length) match[key] = values;
  }
  return { targets: data.getAll("targets"), match };
}

async function saveRule(form) {
  const data = new FormData(form);
  const rule = ruleOf(data);
  if (!rule.targets.length) throw new Error("Choose at least one target the rule sends to.");
  await save("rule", String(data.get("name")).trim(), { ...rule, version: Number(data.get("version")) });
}

// The form's rule, or with no target ticked the saved rules, over the newest objects.
async function dryRun() {
  const data = new FormData(ruleForm());
  const rule = ruleOf(data);
  const body = { match: rule.match, last: Number(data.get("last")) || 100 };
  if (rule.targets.length) body.targets = rule.targets;
  showDryRun(await call("POST", "/api/forward/rules/dry-run", body), rule.targets.length > 0);
}

function showDryRun(answer, ofForm) {
  const section = document.querySelector("#dry-run");
  const totals = Object.entries(answer.per_target).map(([target, n]) => `${target} ${n}`);
  const what = ofForm ? "this rule" : "the saved rules";
  let summary = `Of the ${answer.examined} newest object(s), ${what} would have sent ${answer.matched}`;
  summary += totals.length ? `: ${totals.join(", ")}.` : ".";
  if (answer.unknown.includes("calling_ae")) {
    summary += " Calling AE titles are not kept with stored objects: conditions on them match none here.";
  }
  section.querySelector("[data-summary]").textContent = summary;
  const body = section.querySelector("tbody");
  body.replaceChildren();
  for (const object of answer.objects) {
    const row = body.insertRow();
    row.dataset.sop = object.sop_uid;
    cell(row, object.modality, "modality");
    cell(row, object.door, "door");
    cell(row, object.sop_uid, "uid");
    cell(row, new Date(object.received_at * 1000).toLocaleString());
    const sends = object.sends.map((s) => (ofForm ? s.target : `${s.target} (rule ${s.rule})`));
    cell(row, sends.length ? sends.join(", ") : "nowhere", sends.length ? "sends some" : "sends");
  }
  section.hidden = false;
}

// -- the forms ---------------------------------------------------------------------------

// The two forms differ only in their fields: how an entry fills them and what else they show.
const FORMS = {
  target: { form: targetForm, fill: fillTarget, extras: showTargetExtras },
  rule: { form: ruleForm, fill: fillRule, extras: () => {} },
};

function edit(what, item) {
  const form = FORMS[what].form();
  form.reset();
  editing[what] = item;
  FORMS[what].fill(form, item);
  showMode(what);
  form.scrollIntoView({ block: "nearest" });
}

function showMode(what) {
  const form = FORMS[what].form();
  const item = editing[what];
  form.querySelector("h3").textContent = item ? `Edit ${what} ${item.name} (version ${item.version})` : `Add a ${what}`;
  form.querySelector("button[type=submit]").textContent = item ? `Save ${what}` : `Add ${what}`;
  form.elements.name.readOnly = Boolean(item);
  form.querySelector("[data-stop]").hidden = !item;
  if (!item) form.elements.version.value = "0"; // a new entry: it must not exist yet
  FORMS[what].extras(form, item);
}

function stopEditing(what) {
  editing[what] = null;
  FORMS[what].form().reset();
  showMode(what);
}

async function save(what, name, body) {
  const saved = await call("PUT", entry(`${what}s`, name), body);
  stopEditing(what);
  await reload();
  const word = what[0].toUpperCase() + what.slice(1);
  document.querySelector("#editor-status").textContent = `${word} ${name} saved (version ${saved.version}).`;
}

// Reload: the lists as they are now, and a form that shows an entry shows it anew.
async function reloadAll() {
  await reload();
  for (const what of Object.keys(FORMS)) {
    if (!editing[what]) continue;
    const found = config[`${what}s`].find((item) => item.name === editing[what].name);
    found ? edit(what, found) : stopEditing(what);
  }
}

function onSubmit(form, run) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(form.querySelector("button[type=submit]"), () => run(form));
  });
}

async function main() {
  const section = document.querySelector("#editor");
  const me = await account();
  section.dataset.access = me?.scopes.includes("forward.admin") ? "granted" : "denied";
  if (section.dataset.access === "denied") return;
  const targets = targetForm();
  const rules = ruleForm();
  onSubmit(targets, saveTarget);
  onSubmit(rules, saveRule);
  targets.elements.type.addEventListener("change", () => showKind(targets.elements.type.value));
  const control = (form, selector) => form.querySelector(selector);
  control(targets, "[data-test]").addEventListener("click", (event) =>
    act(event.currentTarget, () => testTarget(editing.target.name)),
  );
  control(targets, "[data-stop]").addEventListener("click", () => stopEditing("target"));
  control(rules, "[data-stop]").addEventListener("click", () => stopEditing("rule"));
  control(rules, "[data-dry-run]").addEventListener("click", (event) => act(event.currentTarget, dryRun));
  const reloadButton = document.querySelector("#editor-reload");
  reloadButton.addEventListener("click", () => act(reloadButton, reloadAll));
  showMode("target");
  showMode("rule");
  try {
    await reload();
  } catch (error) {
    fail(error);
    return;
  }
  section.hidden = false;
}

main();
