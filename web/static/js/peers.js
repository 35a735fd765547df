// The DICOM peers on the admin page: the AE titles C-MOVE may send to, added, changed (host,
// port and TLS, against the version shown), removed, and tested with a C-ECHO whose answer stays beside
// the peer. Everything goes through /api/admin/peers (administrators).

import { cell, changes } from "./nav.js";

const path = (ae) => `/api/admin/peers/${encodeURIComponent(ae)}`;

export function peersSection(api) {
  const { act, onSubmit } = changes(refresh);
  const echoes = new Map(); // AE title -> the last C-ECHO answer, kept across refreshes
  let editing = null; // the peer the form was filled from: its version guards the change

  function send(method, url, body) {
    return api(url, {
      method,
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function button(td, label, run) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = label;
    element.addEventListener("click", () => act(element, run));
    td.append(element);
  }

  function render(listing) {
    const body = document.querySelector("#peer-list tbody");
    body.replaceChildren();
    for (const peer of listing.peers) {
      const row = body.insertRow();
      row.dataset.ae = peer.ae;
      cell(row, peer.ae);
      cell(row, `${peer.host}:${peer.port}${peer.tls ? " (TLS)" : ""}`, "address");
      cell(row, String(peer.version), "version");
      cell(row, `${new Date(peer.updated_at * 1000).toLocaleString()} by ${peer.updated_by}`);
      const answer = echoes.get(peer.ae);
      const echo = cell(row, answer?.detail ?? "", "echo");
      if (answer) echo.classList.add(answer.ok ? "ok" : "failed");
      const td = cell(row, "");
      button(td, "Edit", async () => fill(peer));
      button(td, "C-ECHO Test", () => test(peer.ae));
      button(td, "Remove", () => send("DELETE", `${path(peer.ae)}?version=${peer.version}`));
    }
    if (!listing.peers.length) {
      cell(body.insertRow(), "No peers: every C-MOVE is answered Move Destination Unknown.").colSpan = 6;
    }
  }

  const form = () => document.querySelector("#save-peer");

  // The TLS fields take part in the form (shown, sent) only while TLS is ticked.
  function showTls() {
    const fieldset = form().querySelector("fieldset[data-tls]");
    fieldset.hidden = fieldset.disabled = !form().elements.tls.checked;
  }

  function fill(peer) {
    editing = peer;
    const { elements } = form();
    elements.ae.value = peer.ae;
    elements.host.value = peer.host;
    elements.port.value = peer.port;
    elements.tls.checked = Boolean(peer.tls);
    for (const name of ["ca_file", "cert_file", "key_file"]) elements[name].value = peer.tls?.[name] ?? "";
    elements.verify.checked = peer.tls?.verify ?? true;
    showTls();
    form().scrollIntoView();
  }

  function tlsOf(data) {
    if (!data.get("tls")) return false;
    const tls = { verify: data.get("verify") === "on" };
    for (const name of ["ca_file", "cert_file", "key_file"]) {
      const value = data.get(name).trim();
      if (value) tls[name] = value;
    }
    return tls;
  }

  async function test(ae) {
    echoes.delete(ae);
    const answer = await send("POST", `${path(ae)}/echo`);
    echoes.set(ae, answer);
  }

  async function save(form, element) {
    const ae = form.get("ae").trim();
    // 0: a new peer, refused if one of that title exists meanwhile.
    const version = editing?.ae === ae ? editing.version : 0;
    const body = { host: form.get("host").trim(), port: Number(form.get("port")), tls: tlsOf(form), version };
    await send("PUT", path(ae), body);
    editing = null;
    echoes.delete(ae);
    element.reset();
    showTls();
  }

  async function refresh() {
    render(await api("/api/admin/peers"));
  }

  onSubmit("#save-peer", save);
  form().elements.tls.addEventListener("change", showTls);
  return { refresh };
}
