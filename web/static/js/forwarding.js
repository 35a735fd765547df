// The forwarding queue for PACS administrators: per-target counts and load (λ, μ, ρ, time in
// system against M/M/1, with a small chart of the busy fraction and depth), the tasks with their
// last answer, and retry / cancel. Everything comes from /api/forward (forward.read to look,
// forward.admin to change); the page refreshes itself every few seconds. Administrators also
// get the editor of the targets and rules below it (forwarding_editor.js).

import { cell, installHeader, jsonApi, showError, svgNode } from "./nav.js";

const REFRESH_MS = 5000;
const STATE_NAMES = { pending: "pending", in_flight: "sending", done: "done", dead: "dead letter", cancelled: "cancelled" };
const RETRYABLE = new Set(["dead", "cancelled", "pending"]);
const CHART = { width: 240, height: 48 };

const api = jsonApi("Your account may not see or change the forwarding queue.");

// The page's error area is shared with the targets and rules editor: the queue clears only
// what it showed itself.
function showQueueError(error) {
  document.querySelector("#error").dataset.from = "queue";
  showError("#error", error);
}

function clearQueueError() {
  const box = document.querySelector("#error");
  if (box.dataset.from !== "editor") box.hidden = true;
}

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
      showQueueError(error);
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

function rate(value) {
  return value == null ? "–" : value.toFixed(2);
}

function seconds(value) {
  return value == null ? "–" : `${value.toFixed(2)} s`;
}

// JSON has no infinity: a null utilisation with arrivals is a target busy without a completion.
function utilisationText(target) {
  if (target.utilisation != null) return target.utilisation.toFixed(2);
  return target.arrivals ? "∞" : "–";
}

function predictedText(target) {
  return target.saturated ? "∞ (λ ≥ μ: the queue grows)" : seconds(target.predicted_time_in_system);
}

// Busy fraction and depth (scaled to its highest) step by step, drawn by hand: 30 points need
// no charting library. The dashed line is the warning level.
function loadChart(series, warnAt) {
  const { width, height } = CHART;
  const svg = svgNode("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "load" });
  const deepest = Math.max(1, ...series.map((s) => s.depth));
  const x = (i) => 1 + (i / Math.max(1, series.length - 1)) * (width - 2);
  const y = (fraction) => height - 1 - fraction * (height - 2);
  const line = (values, className) =>
    svgNode("polyline", { points: values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "), class: className });
  svg.append(
    svgNode("title", {}, `busy fraction (blue) and queue depth (orange, top ${deepest}) over the window`),
    svgNode("line", { x1: 0, x2: width, y1: y(warnAt), y2: y(warnAt), class: "threshold" }),
    line(series.map((s) => s.busy), "busy"),
    line(series.map((s) => s.depth / deepest), "depth"),
  );
  return svg;
}

function renderMetrics(metrics) {
  document.querySelector("#window").textContent = `${Math.round(metrics.window / 60)} min`;
  const body = document.querySelector("#metrics tbody");
  body.replaceChildren();
  for (const target of metrics.targets) {
    const row = body.insertRow();
    row.dataset.target = target.target;
    cell(row, target.target);
    cell(row, rate(target.arrival_rate), "lambda");
    cell(row, rate(target.service_rate), "mu");
    cell(row, utilisationText(target), target.warning ? "rho warn" : "rho");
    cell(row, seconds(target.time_in_system), "w-measured");
    cell(row, predictedText(target), "w-predicted");
    cell(row, target.warning ? `ρ above ${metrics.warn_utilisation} over the window` : "", "warning");
    cell(row, "", "chart").append(loadChart(target.series, metrics.warn_utilisation));
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
  const [config, queue, metrics] = await Promise.all([
    api("/api/forward/targets"),
    api(`/api/forward/tasks?${query}`),
    api("/api/forward/metrics"),
  ]);
  renderTargets(config);
  renderMetrics(metrics);
  renderTasks(queue.tasks);
  document.querySelector("#status").textContent = config.targets.length
    ? `${queue.tasks.length} task(s) shown · updated ${new Date().toLocaleTimeString()}`
    : "No forwarding targets are configured.";
  clearQueueError();
}

async function main() {
  installHeader();
  document.querySelector("#filter").addEventListener("submit", (event) => {
    event.preventDefault();
    refresh().catch((error) => showQueueError(error));
  });
  try {
    await refresh();
  } catch (error) {
    showQueueError(error);
    return;
  }
  setInterval(() => refresh().catch((error) => showQueueError(error)), REFRESH_MS);
}

main();
