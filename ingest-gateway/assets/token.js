// The read token of the console and the API docs. When the gateway has READ_TOKENS, the pages
// themselves are open (they hold no data) and every data request carries
// `Authorization: Bearer <token>`. The token is asked once, when a request answers 401, and kept
// in sessionStorage: shared by the pages of this tab, gone when the tab closes, never sent to
// another origin.
"use strict";
(function () {
  const KEY = "ingest.readToken";
  let asking = null;

  function get() {
    return sessionStorage.getItem(KEY) || "";
  }

  function authorize(headers) {
    const token = get();
    if (token) headers.set("Authorization", "Bearer " + token);
    return headers;
  }

  // Shows the token form (once, however many requests are waiting) and resolves when a token
  // has been entered.
  function ask(refused) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const form = document.createElement("form");
      form.id = "token-form";
      form.className = "token-form";
      const text = document.createElement("p");
      text.textContent = refused
        ? "That read token was refused. Enter a valid one."
        : "This gateway needs a read token (READ_TOKENS) for its data.";
      const input = document.createElement("input");
      input.type = "password";
      input.name = "token";
      input.autocomplete = "off";
      input.required = true;
      input.setAttribute("aria-label", "Read token");
      input.placeholder = "read token";
      const button = document.createElement("button");
      button.type = "submit";
      button.textContent = "Use token";
      form.append(text, input, button);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        form.remove();
        asking = null;
        resolve();
      });
      document.body.prepend(form);
      input.focus();
    });
    return asking;
  }

  // fetch() for the read API: with the token, asking for one (and retrying) on 401.
  async function fetchRead(url) {
    for (;;) {
      const response = await fetch(url, {
        headers: authorize(new Headers({ Accept: "application/json" })),
      });
      if (response.status !== 401) return response;
      await ask(get() !== "");
    }
  }

  window.ReadToken = { get, authorize, fetchRead };
})();
