// The dashboard's behaviour beyond plain forms: live updates (server-sent events), announced in
// an aria-live region; keyboard shortcuts; the SMS segment counter; canned replies. No inline
// script anywhere (the Content-Security-Policy forbids it); the pages work without this file.
(function () {
  "use strict";
  var texts = {};

  function announce(text) {
    var region = document.getElementById("live-region");
    if (region) { region.textContent = ""; setTimeout(function () { region.textContent = text; }, 50); }
  }

  function alertImmediate(reference) {
    var box = document.getElementById("alerts");
    if (!box) return;
    var link = document.createElement("a");
    link.href = "/cases/" + encodeURIComponent(reference);
    link.textContent = texts.immediate + ": " + reference;
    var line = document.createElement("p");
    line.appendChild(link);
    box.appendChild(line);
  }

  function refresh(target, url) {
    if (window.htmx) {
      window.htmx.ajax("GET", url, { target: target, select: target, swap: "outerHTML" });
    }
  }

  function startLive() {
    var url = document.body.getAttribute("data-live");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    var onQueue = url.indexOf("case=") < 0;
    function queueChanged(event) {
      var data = JSON.parse(event.data || "{}");
      var label = { new_case: texts.newCase, new_message: texts.newMessage, delivery_failed: texts.failed }[event.type];
      announce(label + (data.reference ? ": " + data.reference : ""));
      if (data.urgency === "immediate") alertImmediate(data.reference);
      if (onQueue) refresh("#queue-rows", window.location.pathname + window.location.search);
    }
    ["new_case", "new_message", "delivery_failed"].forEach(function (name) {
      source.addEventListener(name, queueChanged);
    });
    source.addEventListener("case", function () {
      announce(texts.updated);
      refresh("#transcript", window.location.pathname);
    });
    source.addEventListener("gone", function () { source.close(); });
  }

  // --- SMS segments, as bot/sms.py counts them -------------------------------------------------
  function segments(text, basic, extension) {
    var gsm = true, units = 0;
    for (var ch of text) {
      if (basic.indexOf(ch) >= 0) units += 1;
      else if (extension.indexOf(ch) >= 0) units += 2;
      else { gsm = false; break; }
    }
    var single = 160, multi = 153, encoding = "GSM-7";
    if (!gsm) {
      units = 0;
      for (var i = 0; i < text.length; i++) units += 1; // UTF-16 code units
      single = 70; multi = 67; encoding = "UCS-2";
    }
    var count = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / multi);
    return { count: count, encoding: encoding };
  }

  function setupReply() {
    var box = document.getElementById("reply-text");
    var out = document.getElementById("sms-count");
    if (!box || !out) return;
    var template = out.textContent;
    function update() {
      var s = segments(box.value, box.getAttribute("data-gsm7") || "", box.getAttribute("data-gsm7-extension") || "");
      out.textContent = template.replace(/\d+/, String(s.count)).replace(/GSM-7|UCS-2/, s.encoding);
    }
    box.addEventListener("input", update);
    update();
    document.querySelectorAll("a.use-template").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        box.value = link.getAttribute("data-text");
        update();
        box.focus();
      });
    });
  }

  // --- keyboard: j/k next/previous, o open, a assign to me, r reply, ? the keys ----------------
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.row")); }
  var current = -1;
  function select(index) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) { row.classList.toggle("selected", i === current); });
    var link = all[current].querySelector("a");
    if (link) link.focus();
  }
  function onKey(event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    if (key === "j") select(current + 1);
    else if (key === "k") select(current - 1);
    else if (key === "o") {
      var row = rows()[current];
      if (row) window.location.href = "/cases/" + encodeURIComponent(row.getAttribute("data-ref"));
    } else if (key === "a") {
      var to = document.getElementById("assign-to");
      if (to) { to.value = "me"; document.getElementById("assign-button").click(); }
    } else if (key === "r") {
      var reply = document.getElementById("reply-text");
      if (reply) { reply.focus(); event.preventDefault(); }
    } else if (key === "?") {
      var help = document.getElementById("keys-help");
      if (help && help.showModal) help.showModal();
    } else return;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var t = document.getElementById("live-texts");
    if (t) {
      texts = { newCase: t.dataset.newCase, newMessage: t.dataset.newMessage, failed: t.dataset.failed,
                immediate: t.dataset.immediate, updated: t.dataset.updated };
    }
    document.addEventListener("keydown", onKey);
    setupReply();
    startLive();
  });
})();
