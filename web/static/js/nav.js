// What every page shares: the header (navigation and sign-out), errors, JSON calls, table cells,
// SVG elements for the hand-drawn charts.

export function installHeader() {
  const header = document.querySelector("header.top");
  if (!header) return;
  const out = header.querySelector("[data-logout]");
  if (out) {
    out.addEventListener("click", async () => {
      await fetch("/api/logout", { method: "POST" });
      location.assign("/login");
    });
  }
}

export function showError(target, error) {
  const box = typeof target === "string" ? document.querySelector(target) : target;
  box.hidden = false;
  box.textContent = error instanceof Error ? error.message : String(error);
}

// A JSON call to the hub's API; `forbidden` is the message shown when the account may not.
export function jsonApi(forbidden) {
  return async function api(path, options = {}) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, ...options });
    if (response.status === 403) throw new Error(forbidden);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
    return body;
  };
}

export function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

const SVG = "http://www.w3.org/2000/svg";

export function svgNode(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== undefined) element.textContent = text;
  return element;
}
