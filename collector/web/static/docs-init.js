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
  });
})();
