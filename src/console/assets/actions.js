// Controls that change something through the JSON API (the file page's; any page may
// load this file): each <form data-api-method data-api-path> calls the API itself (the
// same handlers and policy as every API client), authenticated by the session cookie
// and the X-CSRF-Token header, then re-fetches the server-rendered element around it
// that has an id and `data-refresh` (e.g. <div id="file-detail" data-refresh>) through
// htmx.
//
// - `{name}` in data-api-path is replaced by the form field `name` (URL-encoded); the
//   other fields form the JSON body (empty ones left out; data-json="number" sends a
//   number, data-json="datetime" an RFC 3339 instant);
// - data-done: the toast on success; data-confirm: ask first; data-show-link: show the
//   `url` of the answer (a new link's, shown once) below the page (#link-shown).
"use strict";

(function () {
  function body(form, used) {
    const json = {};
    for (const field of form.elements) {
      if (!field.name || used.has(field.name) || field.name === "csrf_token") continue;
      if (field.value === "") continue;
      const kind = field.dataset.json;
      if (kind === "number") json[field.name] = Number(field.value);
      else if (kind === "datetime") json[field.name] = new Date(field.value).toISOString();
      else json[field.name] = field.value;
    }
    return json;
  }

  async function submit(form) {
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const used = new Set();
    const path = form.dataset.apiPath.replace(/\{(\w+)\}/g, function (_, name) {
      used.add(name);
      return encodeURIComponent(form.elements[name].value);
    });
    const json = body(form, used);
    const init = {
      method: form.dataset.apiMethod,
      headers: { "X-CSRF-Token": window.Chronicle.csrf() },
      credentials: "same-origin",
    };
    if (Object.keys(json).length > 0) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    const buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    try {
      const response = await fetch(path, init);
      const text = await response.text();
      const answer = text ? JSON.parse(text) : null;
      if (!response.ok) {
        const message = answer && answer.error ? answer.error.message : "HTTP " + response.status;
        window.Chronicle.toast(message, "error");
        return;
      }
      window.Chronicle.toast(form.dataset.done || "Done.", "ok");
      if (form.dataset.showLink !== undefined && answer && answer.url) {
        // Outside the refreshed element, or the one-time URL would vanish with it.
        const out = document.getElementById("link-shown") || document.createElement("p");
        out.id = "link-shown";
        out.className = "new-link";
        out.textContent = "New link (shown once): " + window.location.origin + answer.url;
        document.getElementById("main").appendChild(out);
      }
      const root = form.closest("[data-refresh][id]");
      if (!root) return;
      const selector = "#" + root.id;
      const reload = function () {
        return window.htmx.ajax("GET", window.location.pathname + window.location.search, {
          target: selector,
          select: selector,
          swap: "outerHTML",
        });
      };
      await reload();
      // Versions come from a read table a moment behind the change (a restore adds one).
      setTimeout(reload, 1500);
    } catch (err) {
      window.Chronicle.toast("The request failed: " + err.message, "error");
    } finally {
      buttons.forEach(function (b) { b.disabled = false; });
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-api-method]");
    if (!form) return;
    event.preventDefault();
    submit(form);
  });
})();
