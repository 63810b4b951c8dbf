// Starts the vendored Swagger UI on /docs. An external file, not an inline <script>, so the collector's
// Content-Security-Policy (script-src 'self') holds on this page too.
(function () {
  "use strict";
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis],
    // No validator badge: it would call out to validator.swagger.io, and the private network has no internet.
    validatorUrl: null,
    // "Try it out" signed in by the session cookie: writes must carry the session's CSRF token
    // (collector/api/csrf.py); calls with an Authorize'd bearer token do not need it, and it does no harm.
    requestInterceptor: function (req) {
      var meta = document.querySelector('meta[name="csrf-token"]');
      if (meta && meta.getAttribute("content")) req.headers["X-CSRF-Token"] = meta.getAttribute("content");
      return req;
    },
  });
})();
