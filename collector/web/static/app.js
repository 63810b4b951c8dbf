// Live pages without a reload: every N seconds fetch this same URL and swap the parts marked
// data-live-part. Served from the collector itself (no CDN); no inline scripts, so a strict CSP holds.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-live") || "0", 10);
  if (!seconds) return;
  var busy = false;

  function typing() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
  }

  function refresh() {
    if (busy || document.hidden || typing()) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Live": "1" } })
      .then(function (r) {
        if (r.redirected || !r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-part]").forEach(function (part) {
          var fresh = doc.querySelector('[data-live-part="' + part.getAttribute("data-live-part") + '"]');
          if (fresh) part.replaceWith(fresh);
        });
        var status = document.getElementById("live-status");
        if (status) status.textContent = "已于 " + new Date().toLocaleTimeString("zh-CN") + " 更新";
      })
      .catch(function () {
        var status = document.getElementById("live-status");
        if (status) status.textContent = "更新失败，稍后重试";
      })
      .then(function () { busy = false; });
  }

  window.setInterval(refresh, seconds * 1000);
  var now = document.getElementById("refresh-now");
  if (now) now.addEventListener("click", refresh);
})();
