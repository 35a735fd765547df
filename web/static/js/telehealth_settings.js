// The tele-ultrasound settings on the administration page (/api/admin/telehealth): STUN and
// TURN servers, relay-only connections and session limits. Saved with the version shown, so a
// change made meanwhile elsewhere is refused rather than overwritten.

import { account, changes, jsonApi } from "./nav.js";

const api = jsonApi("Administrators only: your account may not change the telehealth settings.");
const { onSubmit } = changes(show);
const NUMBERS = [
  "turn_credential_seconds",
  "max_sessions",
  "idle_timeout_seconds",
  "max_clip_seconds",
  "jpeg_quality",
];
let shown = null; // the settings as last read: what a save compares with

function urls(text) {
  return text
    .split(/[\s,]+/)
    .map((url) => url.trim())
    .filter(Boolean);
}

async function show() {
  shown = await api("/api/admin/telehealth");
  const form = document.querySelector("#telehealth-settings");
  form.elements.stun_urls.value = shown.stun_urls.join(" ");
  form.elements.turn_urls.value = shown.turn_urls.join(" ");
  form.elements.turn_secret.value = "";
  form.elements.turn_secret.placeholder = shown.turn_secret_set ? "set (unchanged)" : "none";
  form.elements.clear_turn_secret.checked = false;
  form.elements.ice_transport_policy.value = shown.ice_transport_policy;
  for (const name of NUMBERS) form.elements[name].value = shown[name];
  const by = shown.updated_by === "settings" ? "the settings file" : shown.updated_by;
  const at = new Date(shown.updated_at * 1000).toLocaleString();
  document.querySelector("#telehealth-state").textContent = `Version ${shown.version}, from ${by}, ${at}.`;
}

async function save(data) {
  const body = { version: shown.version };
  for (const name of ["stun_urls", "turn_urls"]) {
    const given = urls(data.get(name));
    if (given.join(" ") !== shown[name].join(" ")) body[name] = given;
  }
  if (data.get("ice_transport_policy") !== shown.ice_transport_policy) {
    body.ice_transport_policy = data.get("ice_transport_policy");
  }
  for (const name of NUMBERS) {
    const value = Number(data.get(name));
    if (value !== shown[name]) body[name] = value;
  }
  if (data.get("clear_turn_secret")) body.turn_secret = "";
  else if (data.get("turn_secret")) body.turn_secret = data.get("turn_secret");
  await api("/api/admin/telehealth", {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function main() {
  const me = await account();
  if (!me?.scopes.includes("admin")) return; // admin.js tells the account so
  onSubmit("#telehealth-settings", save);
  try {
    await show();
  } catch (error) {
    document.querySelector("#telehealth-state").textContent = error.message;
  }
}

main();
