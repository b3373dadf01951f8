// Swagger UI over /openapi.json. The document is fetched once first through ReadToken, which
// asks for the read token if the gateway answers 401; then Swagger UI loads it, and every
// request it sends to this origin (the document, "Try it out") carries the token unless the
// request already has an Authorization header (the Authorize button).
"use strict";
(async function () {
  const status = document.getElementById("docs-status");
  const probe = await window.ReadToken.fetchRead("/openapi.json");
  if (!probe.ok) {
    status.hidden = false;
    status.textContent = "Could not load /openapi.json: HTTP " + probe.status;
    return;
  }
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (request) => {
      const sameOrigin = new URL(request.url, location.href).origin === location.origin;
      const token = window.ReadToken.get();
      if (sameOrigin && token && !request.headers.Authorization) {
        request.headers.Authorization = "Bearer " + token;
      }
      return request;
    },
  });
})();
