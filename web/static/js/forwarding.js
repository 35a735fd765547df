// The forwarding queue for PACS administrators: per-target counts, the tasks with their last
// answer, and retry / cancel. Everything comes from /api/forward (forward.read to look,
// forward.admin to change); the page refreshes itself every few seconds.

import { cell, installHeader, jsonApi, showError } from "./nav.js";

const REFRESH_MS = 5000;
const STATE_NAMES = { pending: "pending", in_flight: "sending", done: "done", dead: "dead letter", cancelled: "cancelled" };
const RETRYABLE = new Set(["dead", "cancelled", "pending"]);

const api = jsonApi("Your account may not see or change the forwarding queue.");

function action(td, label, run) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await run();
      await refresh();
    } catch (error) {
      showError("#error", error);
      button.disabled = false;
    }
  });
  td.append(button);
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function renderTargets(config) {
  const body = document.querySelector("#targets tbody");
  body.replaceChildren();
  const select = document.querySelector("#filter select[name=target]");
  const chosen = select.value;
  select.replaceChildren(new Option("any", ""));
  for (const target of config.targets) {
    const row = body.insertRow();
    row.dataset.target = target.name;
    cell(row, target.name);
    cell(row, target.type === "stow" ? "STOW-RS" : "C-STORE");
    cell(row, target.type === "stow" ? target.url : `${target.called_ae}@${target.host}:${target.port}`);
    for (const state of ["pending", "in_flight", "done", "dead", "cancelled"]) {
      const count = target.tasks[state] || 0;
      cell(row, String(count), `count ${state}${count ? " some" : ""}`);
    }
    const td = cell(row, "");
    if (target.tasks.dead) {
      action(td, "Retry dead letters", () =>
        api(`/api/forward/retry?target=${encodeURIComponent(target.name)}`, { method: "POST" }));
    }
    select.append(new Option(target.name, target.name, false, target.name === chosen));
  }
}

function renderTasks(tasks) {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren();
  for (const task of tasks) {
    const row = body.insertRow();
    row.dataset.task = task.id;
    cell(row, String(task.id));
    cell(row, task.target);
    cell(row, STATE_NAMES[task.state] || task.state, `state ${task.state}`);
    cell(row, String(task.attempts));
    cell(row, task.state === "pending" ? when(task.next_attempt_at) : "");
    const answer = [task.last_status != null ? `0x${task.last_status.toString(16).padStart(4, "0").toUpperCase()}` : "", task.last_error || ""];
    cell(row, answer.filter(Boolean).join(" "), "answer");
    cell(row, task.modality);
    cell(row, task.sop_uid, "uid");
    cell(row, when(task.updated_at));
    const td = cell(row, "");
    if (RETRYABLE.has(task.state)) {
      action(td, task.state === "pending" ? "Send now" : "Retry", () =>
        api(`/api/forward/tasks/${task.id}/retry`, { method: "POST" }));
    }
    if (task.state === "pending") {
      action(td, "Cancel", () => api(`/api/forward/tasks/${task.id}/cancel`, { method: "POST" }));
    }
  }
}

async function refresh() {
  const form = new FormData(document.querySelector("#filter"));
  const query = new URLSearchParams({ limit: "200" });
  for (const key of ["state", "target"]) {
    if (form.get(key)) query.set(key, form.get(key));
  }
  const [config, queue] = await Promise.all([api("/api/forward/targets"), api(`/api/forward/tasks?${query}`)]);
  renderTargets(config);
  renderTasks(queue.tasks);
  document.querySelector("#status").textContent = config.targets.length
    ? `${queue.tasks.length} task(s) shown · updated ${new Date().toLocaleTimeString()}`
    : "No forwarding targets are configured.";
  document.querySelector("#error").hidden = true;
}

async function main() {
  installHeader();
  document.querySelector("#filter").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh().catch((error) => showError("#error", error));
  });
  try {
    await refresh();
  } catch (error) {
    showError("#error", error);
    return;
  }
  setInterval(() => refresh().catch((error) => showError("#error", error)), REFRESH_MS);
}

main();
