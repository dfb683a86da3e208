// API docs page: starts the vendored Swagger UI on /openapi.json. Requests made with
// "Try it out" are same-origin, so the browser sends the console's cookie; state
// changes also need the CSRF header, added here from the page's meta tag.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const target = document.getElementById("swagger-ui");
  if (!target || typeof SwaggerUIBundle !== "function") return;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  target.textContent = "";
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    domNode: target,
    deepLinking: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: (request) => {
      if (!["GET", "HEAD", "OPTIONS"].includes((request.method || "GET").toUpperCase())) {
        request.headers["X-CSRF-Token"] = csrf;
      }
      return request;
    },
  });
});
