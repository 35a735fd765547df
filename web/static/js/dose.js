// Radiation dose: the patients with CT dose records, and one patient's profile (cumulative
// effective dose by window, a time-series chart and the studies), all from /api/dose.

import { cell, installHeader, jsonApi, showError, svgNode as node } from "./nav.js";

const WINDOW_NAMES = { "12w": "12 weeks", "1y": "1 year", "5y": "5 years", lifetime: "Lifetime" };

const api = jsonApi("Your account may not see dose records.");

function mSv(value) {
  return value.toFixed(2);
}

function isoDate(dicomDate) {
  return /^\d{8}$/.test(dicomDate)
    ? `${dicomDate.slice(0, 4)}-${dicomDate.slice(4, 6)}-${dicomDate.slice(6, 8)}`
    : dicomDate;
}

async function showPatients() {
  const { patients } = await api("/api/dose/patients");
  const body = document.querySelector("#patients tbody");
  body.replaceChildren();
  for (const p of patients) {
    const row = body.insertRow();
    row.dataset.identity = p.id;
    const link = document.createElement("a");
    link.href = `/dose?patient=${p.id}`;
    link.textContent = p.name || "(no name)";
    cell(row, "").append(link);
    cell(row, p.patient_id);
    cell(row, p.issuer);
    cell(row, isoDate(p.birth_date));
    cell(row, p.sex);
    cell(row, String(p.studies));
    cell(row, String(p.events));
    cell(row, p.review ? p.review_reason : "");
  }
}

// A step line of the running total over the study dates, drawn by hand: a few dozen points
// need no charting library.
function drawChart(studies) {
  const svg = document.querySelector("#chart");
  svg.replaceChildren();
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const pad = { left: 56, right: 48, top: 12, bottom: 32 };
  const points = [];
  let total = 0;
  for (const s of studies) {
    const when = Date.parse(isoDate(s.date));
    if (Number.isNaN(when)) continue;
    total += s.e_msv;
    points.push({ when, total, study: s });
  }
  if (!points.length) return;
  const first = points[0].when;
  const span = Math.max(points[points.length - 1].when - first, 86400000);
  const top = Math.max(total, 0.001) * 1.1;
  const x = (when) => pad.left + ((when - first) / span) * (width - pad.left - pad.right);
  const y = (value) => height - pad.bottom - (value / top) * (height - pad.top - pad.bottom);
  svg.append(node("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0), stroke: "#888" }));
  svg.append(node("line", { x1: pad.left, y1: y(0), x2: pad.left, y2: pad.top, stroke: "#888" }));
  svg.append(node("text", { x: 4, y: y(top / 1.1) + 4, "font-size": 11 }, mSv(top / 1.1)));
  svg.append(node("text", { x: 4, y: y(0) + 4, "font-size": 11 }, "0"));
  let path = `M ${x(first)} ${y(0)}`;
  for (const p of points) path += ` H ${x(p.when)} V ${y(p.total)}`;
  svg.append(node("path", { d: path, fill: "none", stroke: "#1d4ed8", "stroke-width": 2, class: "series" }));
  for (const p of points) {
    const dot = node("circle", { cx: x(p.when), cy: y(p.total), r: 4, fill: "#1d4ed8", class: "study" });
    dot.append(node("title", {}, `${isoDate(p.study.date)}: ${mSv(p.study.e_msv)} mSv`));
    svg.append(dot);
    svg.append(node("text", { x: x(p.when), y: height - 10, "font-size": 11, "text-anchor": "middle" }, isoDate(p.study.date)));
  }
}

async function showProfile(id) {
  document.querySelector("#patients").hidden = true;
  const profile = await api(`/api/dose/patients/${encodeURIComponent(id)}`);
  const who = profile.identity;
  document.querySelector("#who").textContent = `${who.name || "(no name)"} · ${who.patient_id}${who.issuer ? ` (${who.issuer})` : ""}`;
  if (who.review) {
    const review = document.querySelector("#review");
    review.hidden = false;
    review.textContent = `To review: ${who.review_reason}`;
  }
  document.querySelector("#notice").textContent = profile.notice;
  const totals = document.querySelector("#totals tbody");
  totals.replaceChildren();
  for (const [key, name] of Object.entries(WINDOW_NAMES)) {
    const row = totals.insertRow();
    row.dataset.window = key;
    cell(row, name);
    cell(row, mSv(profile.cumulative_msv[key] ?? 0), "total");
  }
  if (profile.alert.exceeded) {
    const alert = document.querySelector("#alert");
    alert.hidden = false;
    alert.textContent = `The last year's cumulative estimate exceeds the ${profile.alert.threshold_msv} mSv alert level for this age group.`;
  }
  drawChart(profile.studies);
  document.querySelector("#csv").href = `/api/dose/patients/${encodeURIComponent(id)}/events.csv`;
  const body = document.querySelector("#studies tbody");
  body.replaceChildren();
  for (const s of profile.studies) {
    const row = body.insertRow();
    row.dataset.study = s.study_uid;
    cell(row, isoDate(s.date));
    cell(row, s.study_uid, "uid");
    cell(row, String(s.events));
    cell(row, s.dlp_mgycm.toFixed(2), "dlp");
    cell(row, mSv(s.e_msv), "e");
    cell(row, s.flagged ? "yes" : "");
  }
  document.querySelector("#profile").hidden = false;
}

installHeader();
const patient = new URLSearchParams(location.search).get("patient");
(patient ? showProfile(patient) : showPatients()).catch((error) => showError("#error", error));
