// What every page shares: the header (navigation and sign-out), errors, JSON calls, table cells,
// SVG elements for the hand-drawn charts.

// The sections of the hub, each shown to whoever holds its permission (the first of a label).
const SECTIONS = [
  ["/studies", "Studies", "dicomweb.read"],
  ["/upload", "Upload", "slides.upload"],
  ["/worklist", "Worklist", "worklist.read"],
  ["/telehealth/clinic", "Tele-ultrasound", "telehealth.start"],
  ["/telehealth/specialist", "Tele-ultrasound", "telehealth.join"],
  ["/forwarding", "Forwarding", "forward.read"],
  ["/dose", "Dose", "dose.read"],
  ["/admin", "Admin", "admin"],
];

let accountAnswer;

// The signed-in account ({user, role, via, scopes}), asked once per page; null when signed out.
export function account() {
  accountAnswer ??= fetch("/api/me", { headers: { Accept: "application/json" } }).then((response) =>
    response.ok ? response.json() : null,
  );
  return accountAnswer;
}

export function installHeader() {
  const header = document.querySelector("header.top");
  if (!header) return;
  const out = header.querySelector("[data-logout]");
  if (out) {
    const password = document.createElement("a");
    password.href = `/account/password?next=${encodeURIComponent(location.pathname + location.search)}`;
    password.textContent = "Change password";
    password.dataset.password = "";
    out.before(password, " ");
    out.addEventListener("click", async () => {
      await fetch("/api/logout", { method: "POST" });
      location.assign("/login");
    });
  }
  const nav = header.querySelector("nav");
  if (nav) showSections(nav).catch(() => {}); // signed out: the page's own links stay
}

// One navigation on every page: the sections the caller may use, then the page's own links
// (marked data-keep).
async function showSections(nav) {
  const me = await account();
  if (!me) return;
  const granted = new Set(me.scopes);
  const shown = new Set();
  const links = [];
  for (const [href, label, permission] of SECTIONS) {
    if (!granted.has(permission) || shown.has(label)) continue;
    shown.add(label);
    const link = document.createElement("a");
    link.href = href;
    link.textContent = label;
    if (location.pathname.startsWith(href)) link.setAttribute("aria-current", "page");
    links.push(link);
  }
  const kept = [...nav.querySelectorAll("[data-keep]")];
  nav.replaceChildren(...[...links, ...kept].flatMap((node, i) => (i ? [" ", node] : [node])));
  nav.dataset.sections = "shown";
}

export function showError(target, error) {
  const box = typeof target === "string" ? document.querySelector(target) : target;
  box.hidden = false;
  box.textContent = error instanceof Error ? error.message : String(error);
}

// A JSON call to the hub's API; `forbidden` is the message shown when the account may not.
export function jsonApi(forbidden) {
  return async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...options.headers };
    const response = await fetch(path, { ...options, headers });
    if (response.status === 403) throw new Error(forbidden);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `${path}: HTTP ${response.status}`);
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

// Changes made from a page: run one, then show the page's data again with `refresh` (after a
// refusal too: what was refused may have changed meanwhile); errors go to the #error banner.
export function changes(refresh) {
  async function act(control, run) {
    control.disabled = true;
    try {
      await run();
      document.querySelector("#error").hidden = true;
    } catch (error) {
      showError("#error", error);
    }
    try {
      await refresh();
    } catch (error) {
      showError("#error", error);
    } finally {
      control.disabled = false;
    }
  }

  function onSubmit(selector, run) {
    const form = document.querySelector(selector);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(form.querySelector("button[type=submit]"), () => run(new FormData(form), form));
    });
  }

  return { act, onSubmit };
}

// The page's first showing: its data, then its sections (#sections), or the error alone.
export async function firstShow(refresh) {
  try {
    await refresh();
  } catch (error) {
    showError("#error", error);
    return;
  }
  document.querySelector("#sections").hidden = false;
}
