// Choosing a new password: posts the current and the new one, then goes on to the same-site
// "next" path (where a one-time password's sign-in was headed).
"use strict";
(function () {
  const form = document.getElementById("password");
  const message = document.getElementById("message");
  const wanted = new URLSearchParams(window.location.search).get("next") || "/";
  const next = wanted.startsWith("/") && !wanted.startsWith("//") && !wanted.includes("\\") ? wanted : "/";

  fetch("/api/me", { credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : null))
    .then((me) => {
      if (!me) return window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
      form.username.value = me.user;
      document.getElementById("why").hidden = !me.password_temporary;
    })
    .catch(() => {});

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    if (form.new.value !== form.again.value) {
      message.textContent = "The two new passwords differ.";
      return;
    }
    let response;
    try {
      response = await fetch("/api/account/password", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ current: form.current.value, new: form.new.value }),
        credentials: "same-origin",
      });
    } catch {
      message.textContent = "The server cannot be reached.";
      return;
    }
    if (response.ok) {
      window.location.assign(next);
      return;
    }
    const problem = await response.json().catch(() => ({}));
    message.textContent = problem.detail || `Not changed (HTTP ${response.status}).`;
  });
})();
