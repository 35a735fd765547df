// Patient changes on the admin page: the updates (ADT A08) and merges (A40) the patient
// administration sent, newest first, each with a Revert button while it stands. A revert
// refused (a later change of the same patient must go first) shows its reason.
// Everything goes through /api/admin/patients/changes (administrators).

import { cell, changes } from "./nav.js";

const NAMES = { "00100010": "name", "00100030": "birth date", "00100040": "sex" };

function given(change) {
  const parts = [];
  for (const [tag, label] of Object.entries(NAMES)) {
    const element = change.given[tag];
    if (!element) continue;
    const value = element.Value?.[0];
    parts.push(`${label} ${value === undefined ? "cleared" : (value.Alphabetic ?? value)}`);
  }
  return parts.join(", ") || "nothing new";
}

function patient(key) {
  return key.issuer ? `${key.id} (${key.issuer})` : key.id;
}

export function patientsSection(api) {
  const { act, onSubmit } = changes(refresh);
  let shown = "";

  function render(listing) {
    const body = document.querySelector("#patient-changes tbody");
    body.replaceChildren();
    for (const change of listing.changes) {
      const row = body.insertRow();
      row.dataset.change = change.id;
      cell(row, String(change.id));
      cell(row, new Date(change.at * 1000).toLocaleString());
      cell(row, change.kind === "merge" ? `${patient(change.prior)} into ${patient(change.patient)}` : patient(change.patient));
      cell(row, given(change));
      cell(row, `${change.studies} studies, ${change.steps} worklist steps`);
      cell(row, `${change.who} (message ${change.message || "none"})`);
      const td = cell(row, "", "state");
      if (change.reverted_at) {
        td.textContent = `Reverted ${new Date(change.reverted_at * 1000).toLocaleString()} by ${change.reverted_by}`;
        continue;
      }
      const revert = document.createElement("button");
      revert.type = "button";
      revert.textContent = "Revert";
      const url = `/api/admin/patients/changes/${change.id}/revert`;
      revert.addEventListener("click", () => act(revert, () => api(url, { method: "POST" })));
      td.append(revert);
    }
    if (!listing.changes.length) {
      cell(body.insertRow(), "No patient changes.").colSpan = 7;
    }
  }

  async function refresh() {
    const query = shown ? `?patient=${encodeURIComponent(shown)}` : "";
    render(await api(`/api/admin/patients/changes${query}`));
  }

  onSubmit("#patient-search", async (form) => {
    shown = form.get("patient").trim();
  });
  return { refresh };
}
