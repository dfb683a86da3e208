// The console's shared script (loaded by every page, after htmx). No inline script is
// allowed by the CSP, so everything a page does in JavaScript lives in files like this.
//
// - every htmx request carries the session's CSRF token (X-CSRF-Token) from
//   <meta name="csrf-token">;
// - Chronicle.toast(text, kind) shows a short message in the page's live region;
// - an htmx request that fails shows a toast instead of failing silently.
"use strict";

window.Chronicle = (function () {
  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function toast(text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast" + (kind ? " toast-" + kind : "");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(function () {
      item.remove();
    }, 6000);
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrf();
  });
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr ? event.detail.xhr.status : 0;
    toast("The request failed (HTTP " + status + ").", "error");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached.", "error");
  });

  return { csrf: csrf, toast: toast };
})();
