// Sign-in: posts the form as JSON and follows the server's same-site "next" path.
"use strict";
(function () {
  const form = document.getElementById("login");
  const message = document.getElementById("message");
  const params = new URLSearchParams(window.location.search);
  document.getElementById("next").value = params.get("next") || "/";
  const errors = { "1": "Wrong user or password.", locked: "Too many failed attempts; try later." };
  if (errors[params.get("error")]) message.textContent = errors[params.get("error")];

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    const body = {
      username: form.username.value,
      password: form.password.value,
      next: form.next.value,
    };
    let response;
    try {
      response = await fetch("/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (err) {
      message.textContent = "The server cannot be reached.";
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      window.location.assign(answer.next || "/");
    } else if (response.status === 429) {
      message.textContent = errors.locked;
    } else {
      message.textContent = errors["1"];
    }
  });
})();
