// The System section of the administration page: the hub's versions, storage and index, what
// it holds, its queues and nodes, open DICOM associations, backups and the errors it logged last
// (GET /api/admin/system), and the forwarding queue's load (GET /api/forward/metrics). Shown when
// the page opens and again on Refresh.

import { cell } from "./nav.js";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

function size(bytes) {
  if (bytes == null) return "unknown";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

function count(value) {
  return value.toLocaleString("en");
}

function age(seconds) {
  if (seconds == null) return "";
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function local(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// A table of labelled lines: a header cell, then the value (its class names the line).
function facts(selector) {
  const body = document.querySelector(`${selector} tbody`);
  body.replaceChildren();
  return (label, text, className, title) => {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    row.append(th);
    const td = cell(row, text, className);
    if (title) td.title = title;
  };
}

function renderVersions(versions) {
  const line = facts("#system-versions");
  line("Tessera hub", versions.tessera_hub || "unknown", "tessera-hub");
  line("Python", versions.python, "python");
  line("pydicom", versions.pydicom, "pydicom");
  line("pynetdicom", versions.pynetdicom, "pynetdicom");
  line("SQLAlchemy", versions.sqlalchemy, "sqlalchemy");
  line("Index engine", `${versions.index_engine} ${versions.index_server} (driver ${versions.index_driver})`, "index-engine");
}

function renderStorage(storage, index) {
  const line = facts("#system-storage");
  line("Object store", storage.kind === "s3" ? "S3" : "local folder", "store-kind");
  line("Location", storage.location, "store-location");
  line("Encrypted at rest", storage.encrypted ? "yes" : "no", "encrypted");
  line("Used by stored objects", `${count(storage.objects)} · ${size(storage.object_bytes)}`, "store-used", `${storage.object_bytes} bytes`);
  line("Data folder", storage.data_folder, "data-folder");
  const free = storage.data_folder_free_bytes;
  line(
    "Free space",
    free == null ? "unknown" : `${size(free)} free of ${size(storage.data_folder_total_bytes)}`,
    "free-space",
    free == null ? "" : `${free} bytes`,
  );
  line(`Index size (${index.engine})`, size(index.size_bytes), "index-size", index.size_bytes == null ? "" : `${index.size_bytes} bytes`);
}

function renderCounts(index, storage) {
  const body = document.querySelector("#system-counts tbody");
  body.replaceChildren();
  const row = body.insertRow();
  cell(row, count(index.studies), "number studies");
  cell(row, count(index.series), "number series");
  cell(row, count(index.instances), "number instances");
  cell(row, count(storage.objects), "number objects");
  cell(row, size(storage.object_bytes), "number bytes").title = `${storage.object_bytes} bytes`;
}

// One column per state, one row of counts.
function renderDepths(selector, depths) {
  const table = document.querySelector(selector);
  const head = table.tHead;
  head.replaceChildren();
  const labels = head.insertRow();
  const body = table.tBodies[0];
  body.replaceChildren();
  const row = body.insertRow();
  for (const [state, n] of Object.entries(depths)) {
    const th = document.createElement("th");
    th.textContent = state.replace("_", " ");
    labels.append(th);
    cell(row, count(n), `number ${state}`);
  }
}

function renderNodes(nodes) {
  const body = document.querySelector("#system-nodes tbody");
  body.replaceChildren();
  for (const node of nodes) {
    const row = body.insertRow();
    row.dataset.node = node.id;
    cell(row, node.this_node ? `${node.id} (this node)` : node.id);
    cell(row, node.host);
    cell(row, node.version);
    cell(row, local(node.started_at));
    cell(row, age(node.heartbeat_age_seconds));
    cell(row, node.alive ? "alive" : "silent", node.alive ? "state alive" : "state warn");
    cell(row, count(node.active_jobs), "number jobs");
  }
  if (!nodes.length) cell(body.insertRow(), "No node is registered.").colSpan = 7;
}

function renderDimse(dimse) {
  const line = facts("#system-dimse");
  if (!dimse.enabled) {
    line("DIMSE service", "off (no DICOM port configured)", "dimse-off");
    return;
  }
  line("Called AE title", dimse.ae_title);
  line("Port", String(dimse.port));
  line("Open associations", `${dimse.open_associations} of at most ${dimse.max_associations}`, "open-associations");
  line("Connections not yet associated", String(dimse.connecting), "connecting");
}

function renderErrors(errors) {
  const list = document.querySelector("#system-errors");
  list.replaceChildren();
  for (const error of errors) {
    const item = document.createElement("li");
    const at = document.createElement("time");
    at.dateTime = error.time;
    at.textContent = local(error.time);
    const logger = Object.assign(document.createElement("span"), { className: "logger", textContent: error.logger });
    item.append(at, ` · ${error.level} · `, logger, ": ", error.message);
    list.append(item);
  }
  if (!errors.length) list.append(Object.assign(document.createElement("li"), { className: "none", textContent: "none" }));
}

function renderBackup(status) {
  const line = facts("#backup");
  const backup = status.last_backup;
  const verify = status.last_verify;
  line("Target", status.target ?? "none configured");
  line("Schedule", status.schedule.interval_hours ? `every ${status.schedule.interval_hours} h` : "not scheduled");
  line("Last backup", backup ? `${backup.name} · ${backup.at} (${age(backup.age_seconds)}) · ${backup.objects} object(s)` : "none", "last-backup");
  line("Last verify", verify ? `${verify.outcome} · ${verify.at} (${age(verify.age_seconds)}) · ${verify.read} of ${verify.objects} read` : "none", verify?.outcome === "problems" ? "last-verify warn" : "last-verify");
  line("Next run", status.next_run ?? "");
  line("Stale", status.stale ? "yes: the last backup is older than two intervals" : "no", status.stale ? "stale warn" : "stale");
  if (status.target_error) line("Target error", status.target_error, "warn");
}

function rate(value) {
  return value == null ? "–" : value.toFixed(2);
}

function renderQueue(metrics) {
  const body = document.querySelector("#queue tbody");
  body.replaceChildren();
  for (const target of metrics.targets) {
    const row = body.insertRow();
    row.dataset.target = target.target;
    cell(row, target.target);
    cell(row, String(target.depth.pending ?? 0));
    cell(row, String(target.depth.in_flight ?? 0));
    cell(row, String(target.depth.dead ?? 0));
    cell(row, rate(target.arrival_rate));
    cell(row, rate(target.service_rate));
    cell(row, target.utilisation != null ? target.utilisation.toFixed(2) : target.arrivals ? "∞" : "–", target.warning ? "rho warn" : "rho");
    cell(row, target.warning ? `ρ above ${metrics.warn_utilisation}` : "", "warning");
  }
  if (!metrics.targets.length) cell(body.insertRow(), "No forwarding targets are configured.").colSpan = 8;
}

// The section's data, asked with `api` (the page's JSON call), shown in place.
export async function showSystem(api) {
  const [report, metrics] = await Promise.all([api("/api/admin/system"), api("/api/forward/metrics")]);
  document.querySelector("#system-at").textContent = `As of ${local(report.at)}, answered by node ${report.node}.`;
  renderVersions(report.versions);
  renderStorage(report.storage, report.index);
  renderCounts(report.index, report.storage);
  renderDepths("#system-forwarding", report.forwarding);
  renderDepths("#system-jobs", report.jobs);
  renderNodes(report.nodes);
  renderDimse(report.dimse);
  renderErrors(report.recent_errors);
  renderBackup(report.backups);
  renderQueue(metrics);
}
