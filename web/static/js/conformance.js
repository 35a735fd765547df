// The DICOM conformance statement of this node, from /api/conformance, as tables.

import { cell, installHeader, jsonApi, showError } from "./nav.js";

const api = jsonApi("The conformance statement cannot be read.");

function rows(selector, items, fill) {
  const body = document.querySelector(`${selector} tbody`);
  body.replaceChildren();
  for (const item of items) fill(body.insertRow(), item);
}

// A cell listing UIDs with their names, one a line; long lists fold away behind their count.
function uidCell(row, uids, noun) {
  const td = cell(row, "");
  const list = document.createElement("ul");
  list.className = "uids";
  for (const { uid, name } of uids) {
    const item = document.createElement("li");
    item.dataset.uid = uid;
    item.textContent = uid === "*" ? name : `${name} (${uid})`;
    list.append(item);
  }
  if (uids.length <= 8) {
    td.append(list);
    return;
  }
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = `${uids.length} ${noun}`;
  details.append(summary, list);
  td.append(details);
}

function pairs(selector, entries) {
  rows(selector, entries, (row, [name, value]) => {
    const th = document.createElement("th");
    th.textContent = name;
    row.append(th);
    cell(row, value);
  });
}

function showProduct({ product }) {
  pairs("#product", [
    ["Product", product.name],
    ["Version", product.version],
    ["Implementation Class UID", product.implementation_class_uid],
    ["Implementation Version Name", product.implementation_version_name],
  ]);
}

function showDimse({ dimse }) {
  document.querySelector("#dimse-state").textContent = dimse.enabled
    ? `This node listens for DIMSE${dimse.tls ? " over TLS" : ""}.`
    : "This node does not listen for DIMSE now (no DIMSE port set); with one it offers these services.";
  rows("#dimse", dimse.services, (row, service) => {
    row.dataset.service = service.service;
    row.dataset.role = service.role;
    cell(row, service.service);
    cell(row, service.role);
    uidCell(row, service.sop_classes, "SOP classes");
    uidCell(row, service.transfer_syntaxes, "transfer syntaxes");
    cell(row, service.note);
  });
  const qr = dimse.query_retrieve;
  rows("#models", qr.models, (row, model) => {
    cell(row, model.name);
    cell(row, model.uid, "uid");
    cell(row, model.levels.join(", "));
  });
  pairs("#retrieve", [
    ["Return keys", qr.return_keys],
    ["C-MOVE and C-GET select by", qr.retrieve_keys.join(", ")],
    ["C-MOVE destinations", qr.move_destinations],
  ]);
  const mwl = dimse.worklist;
  rows("#mwl-keys", mwl.matching_keys, (row, key) => {
    cell(row, key.keyword);
    cell(row, key.matching.join(", "));
  });
  pairs("#mwl-returned", [
    ["Return keys", mwl.return_keys.join(", ")],
    ["Statuses when none is asked for", mwl.default_statuses.join(", ")],
  ]);
}

function showDicomweb({ dicomweb }) {
  rows("#dicomweb", dicomweb.resources, (row, resource) => {
    row.dataset.path = resource.path;
    cell(row, resource.service);
    cell(row, resource.resource);
    cell(row, `${resource.method} ${resource.path}`, "uid");
    const types = cell(row, "");
    for (const media of resource.media_types) {
      const line = document.createElement("div");
      line.textContent = media.note ? `${media.media_type} (${media.note})` : media.media_type;
      types.append(line);
    }
    const all = resource.media_types.flatMap((media) => media.transfer_syntaxes);
    uidCell(row, [...new Map(all.map((ts) => [ts.uid, ts])).values()], "transfer syntaxes");
  });
  const { qido } = dicomweb;
  rows("#qido-keys", qido.matching_keys, (row, key) => {
    row.dataset.keyword = key.keyword;
    cell(row, key.keyword);
    cell(row, key.tag, "uid");
    cell(row, key.level);
    cell(row, key.matching.join(", "));
  });
  pairs("#qido-notes", [
    ["fuzzymatching=true", `person-name matching by word prefix: ${qido.fuzzy_matching.join(", ")}`],
    ["includefield", qido.includefield],
    ["Paging", qido.paging],
    ["Several values", qido.multiple_values],
    ["STOW-RS accepts", dicomweb.stow.media_types.map((m) => m.media_type).join(", ")],
    ["STOW-RS answers", dicomweb.stow.response],
  ]);
}

function showSecurity({ security }) {
  const list = document.querySelector("#security ul");
  list.replaceChildren(
    ...security.map((line) => {
      const item = document.createElement("li");
      item.textContent = line;
      return item;
    }),
  );
}

async function show() {
  const statement = await api("/api/conformance");
  showProduct(statement);
  showDimse(statement);
  showDicomweb(statement);
  showSecurity(statement);
  document.querySelector("#statement").hidden = false;
  document.body.dataset.shown = "statement";
}

installHeader();
show().catch((error) => showError("#error", error));
