// The review pages (collector/api/reviewpages.py). Every item is saved as it is typed: the latest value of
// each item waits in a queue kept in localStorage, and is sent one request at a time; when the line drops
// (a village visit on a phone) the queue keeps it and sends it when the browser is back online, or on the
// next page load. Nothing is sent from page content: values come from the form fields only.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function api(method, url, body, raw) {
    var headers = { "X-CSRF-Token": csrf };
    if (!raw) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin",
                        body: raw ? body : (body === undefined ? undefined : JSON.stringify(body)) });
  }

  function detail(resp) {
    return resp.json().then(function (j) {
      var d = j && j.detail;
      return typeof d === "string" ? d : JSON.stringify(d);
    }, function () { return "HTTP " + resp.status; });
  }

  // -- opening a review (the list page) and a correction (a submitted review) ------------------------------
  function openReview(body, errorBox) {
    api("POST", "/api/v1/reviews", body).then(function (resp) {
      if (resp.ok) return resp.json().then(function (j) { location.href = "/reviews?id=" + j.id; });
      return detail(resp).then(function (d) { errorBox.textContent = "无法开始评审：" + d; });
    }, function () { errorBox.textContent = "网络不可用，请稍后再试"; });
  }
  var openForm = document.getElementById("open-review");
  if (openForm) {
    openForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      openReview({ point: openForm.point.value, from: openForm.from.value, to: openForm.to.value },
                 document.getElementById("open-error"));
    });
  }
  var correct = document.getElementById("correct-review");
  if (correct) {
    correct.addEventListener("click", function () {
      openReview({ point: correct.dataset.point, from: correct.dataset.from, to: correct.dataset.to,
                   replaces: Number(correct.dataset.replaces) }, document.getElementById("open-error"));
    });
  }

  var root = document.getElementById("review");
  if (!root || root.dataset.editable !== "1") return;
  var id = root.dataset.id;
  var storeKey = "pointwatch-review-" + id;
  var pending = {};
  try { pending = JSON.parse(localStorage.getItem(storeKey) || "{}") || {}; } catch (e) { pending = {}; }
  var sending = false;
  var submitAfterFlush = false;
  var syncText = document.getElementById("sync-text");

  function card(item) { return root.querySelector('article.item[data-item="' + CSS.escape(item) + '"]'); }
  function mark(item, text, cls) {
    var c = card(item);
    if (!c) return;
    var s = c.querySelector(".sync");
    s.textContent = text;
    s.className = "sync " + (cls || "");
  }
  function keep() { localStorage.setItem(storeKey, JSON.stringify(pending)); }
  function status() {
    var n = Object.keys(pending).length;
    syncText.textContent = n ? (navigator.onLine ? n + " 项正在保存" : "网络中断：" + n + " 项暂存在本机，恢复后自动补传")
                             : "全部已保存";
    syncText.className = "sync-state" + (n ? " waiting" : " saved");
  }

  function payload(c) {
    var score = c.querySelector('[name="score"]');
    var note = c.querySelector('[name="note"]');
    var veto = c.querySelector('[name="veto"]');
    var reason = c.querySelector('[name="reason"]');
    var body = { score: score && score.value.trim() !== "" ? Number(score.value) : null,
                 note: note ? note.value : null };
    if (veto) body.veto = veto.checked;
    if (reason) {
      body.reason = reason.value;
      if (body.score !== null && !reason.value.trim()) return null;  // an override needs its reason first
    }
    return body;
  }

  function changed(c) {
    var item = c.dataset.item;
    var body = payload(c);
    if (body === null) { mark(item, "请填写改判理由", "bad"); return; }
    pending[item] = body;
    keep();
    mark(item, "待保存", "waiting");
    status();
    flush();
  }

  function refreshTotals() {
    fetch("/api/v1/reviews/" + id, { credentials: "same-origin" }).then(function (resp) {
      return resp.ok ? resp.json() : null;
    }).then(function (r) {
      if (!r) return;
      var s = "自动项 " + r.automatic + " 分 + 人工项 " + r.manual + " 分 = 总分 " + (r.automatic + r.manual) + " 分";
      if (r.vetoed) s += "；一票否决，总分计 0 分";
      document.getElementById("sum-text").textContent = s + "（满分 " + r.full_marks + " 分）";
      document.getElementById("missing-text").textContent = r.missing.length ? "尚有 " + r.missing.length + " 项人工评分未填" : "人工评分已全部填写";
    }, function () {});
  }

  function flush() {
    if (sending) return;
    var items = Object.keys(pending);
    if (!items.length) {
      status();
      if (submitAfterFlush) submitNow(); else refreshTotals();
      return;
    }
    if (!navigator.onLine) { items.forEach(function (i) { mark(i, "离线暂存", "waiting"); }); status(); return; }
    var item = items[0];
    var body = pending[item];
    var sent = JSON.stringify(body);
    sending = true;
    mark(item, "保存中…", "waiting");
    api("PUT", "/api/v1/reviews/" + id + "/items/" + encodeURIComponent(item), body).then(function (resp) {
      sending = false;
      if (resp.ok) {
        if (JSON.stringify(pending[item]) === sent) { delete pending[item]; keep(); mark(item, "已保存", "ok"); }
        flush();
        return;
      }
      return detail(resp).then(function (d) {
        if (resp.status === 401 || resp.status === 403) { mark(item, "未保存：请重新登录（" + d + "）", "bad"); status(); return; }
        delete pending[item]; keep();  // refused for its content: saying why, not retrying it forever
        mark(item, "未保存：" + d, "bad");
        flush();
      });
    }, function () {
      sending = false;  // the line dropped: keep it, try again when it is back
      mark(item, "离线暂存", "waiting");
      status();
      setTimeout(flush, 3000);
    });
  }

  var timers = {};
  root.querySelectorAll("article.item").forEach(function (c) {
    var item = c.dataset.item;
    var saved = pending[item];
    if (saved) {  // typed before a reload or a lost connection: put it back in the fields
      var f = c.querySelector('[name="score"]');
      if (f) f.value = saved.score === null || saved.score === undefined ? "" : saved.score;
      if (c.querySelector('[name="note"]') && saved.note !== null) c.querySelector('[name="note"]').value = saved.note;
      if (c.querySelector('[name="veto"]')) c.querySelector('[name="veto"]').checked = !!saved.veto;
      if (c.querySelector('[name="reason"]') && saved.reason !== undefined) c.querySelector('[name="reason"]').value = saved.reason;
      mark(item, "待保存", "waiting");
    }
    c.addEventListener("input", function (ev) {
      if (ev.target.name === "file") return;
      clearTimeout(timers[item]);
      timers[item] = setTimeout(function () { delete timers[item]; changed(c); }, 400);
    });
    c.addEventListener("change", function (ev) {
      if (ev.target.name !== "file") { clearTimeout(timers[item]); delete timers[item]; changed(c); return; }
      var file = ev.target.files[0];
      if (!file) return;
      mark(item, "上传中…", "waiting");
      api("POST", "/api/v1/reviews/" + id + "/attachments?item=" + encodeURIComponent(item) + "&name=" +
          encodeURIComponent(file.name), file, true).then(function (resp) {
        if (!resp.ok) return detail(resp).then(function (d) { mark(item, "附件未保存：" + d, "bad"); });
        var li = document.createElement("li");
        li.textContent = file.name;
        c.querySelector(".files").appendChild(li);
        mark(item, "附件已保存", "ok");
        ev.target.value = "";
      }, function () { mark(item, "网络中断，附件未上传，请恢复后重选", "bad"); });
    });
  });
  window.addEventListener("online", flush);
  window.addEventListener("offline", status);
  status();
  flush();

  function submitNow() {
    var box = document.getElementById("submit-error");
    submitAfterFlush = false;
    api("POST", "/api/v1/reviews/" + id + "/submit").then(function (resp) {
      if (resp.ok) { localStorage.removeItem(storeKey); location.reload(); return; }
      return detail(resp).then(function (d) { box.textContent = "未能提交：" + d; });
    }, function () { box.textContent = "网络不可用，请恢复后再提交"; });
  }
  document.getElementById("submit-review").addEventListener("click", function () {
    var box = document.getElementById("submit-error");
    Object.keys(timers).forEach(function (item) {  // a value typed a moment ago: queue it now
      clearTimeout(timers[item]); delete timers[item]; changed(card(item));
    });
    if (!Object.keys(pending).length && !sending) { submitNow(); return; }
    if (!navigator.onLine) { box.textContent = "网络中断：评分暂存在本机，恢复后自动补传，届时再提交"; return; }
    box.textContent = "正在保存最后的评分，保存后自动提交…";
    submitAfterFlush = true;
    flush();
  });
})();
