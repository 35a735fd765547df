// The page header: navigation and sign-out.

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
