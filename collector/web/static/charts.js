// Core-network RTT and loss charts on the point page, drawn with the vendored uPlot.
(function () {
  "use strict";
  var COLORS = ["#0b4f8a", "#c77c02", "#1f8b4c", "#6a1b9a", "#c62828", "#00838f"];

  // 24-hour China-style ticks: "14:30" within a day, "11-25 14:30" beyond.
  var longRange = false;
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function tick(ts) {
    var d = new Date(ts * 1000);
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return longRange ? pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm : hm;
  }

  function fullTime(ts) {
    var d = new Date(ts * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" +
      pad(d.getMinutes());
  }

  function draw(box, range) {
    longRange = range !== "24h";
    var url = box.getAttribute("data-series") + "?range=" + encodeURIComponent(range);
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
      var targets = Object.keys(data.targets || {});
      box.querySelector(".chart-empty").hidden = targets.length > 0;
      box.querySelectorAll(".chart").forEach(function (el) {
        el.innerHTML = "";
        if (!targets.length) return;
        var metric = el.getAttribute("data-metric");
        var scale = metric === "rtt" ? 1000 : 100;
        // The x series' legend: uPlot says "Time" and "8:05pm" by default; staff read 时间 and 24-hour times.
        var series = [{ label: "时间", value: function (u, ts) { return ts == null ? "—" : fullTime(ts); } }];
        var columns = [data.t];
        targets.forEach(function (name, i) {
          var values = data.targets[name][metric === "rtt" ? "value" : "loss"];
          columns.push(values.map(function (v) { return v === null ? null : v * scale; }));
          series.push({ label: name, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false });
        });
        var width = Math.max(240, Math.min(el.clientWidth || box.clientWidth || 600, box.clientWidth || 600));
        new uPlot({
          title: metric === "rtt" ? "平均时延（毫秒）" : "丢包率（%）",
          width: width, height: 200, series: series,
          axes: [{ values: function (u, splits) { return splits.map(tick); } }, { label: metric === "rtt" ? "ms" : "%" }],
          scales: metric === "loss" ? { y: { range: [0, 100] } } : {}
        }, columns, el);
      });
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    // Charts are drawn at a fixed width: redraw them for the new width (e.g. a phone turned sideways).
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(function () {
      document.querySelectorAll(".chart-box").forEach(function (box) {
        var on = box.querySelector("button[data-range].on");
        draw(box, on ? on.getAttribute("data-range") : "24h");
      });
    }, 150);
  });

  document.querySelectorAll(".chart-box").forEach(function (box) {
    draw(box, "24h");
    box.querySelectorAll("button[data-range]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        box.querySelectorAll("button[data-range]").forEach(function (b) { b.classList.remove("on"); });
        btn.classList.add("on");
        draw(box, btn.getAttribute("data-range"));
      });
    });
  });
})();
