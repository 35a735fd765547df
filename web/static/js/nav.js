// The page header: navigation, the signed-in user and sign-out.

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
  const who = header.querySelector("[data-user]");
  if (who) {
    fetch("/api/me")
      .then((r) => (r.ok ? r.json() : null))
      .then((me) => {
        if (me && me.user) who.textContent = `${me.user} (${me.role})`;
      })
      .catch(() => {});
  }
}

export function showError(target, error) {
  const box = typeof target === "string" ? document.querySelector(target) : target;
  box.hidden = false;
  box.textContent = error instanceof Error ? error.message : String(error);
}
