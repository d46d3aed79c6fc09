// pgmoneta web console: the page reads without this script; it adds the theme toggle, refresh
// and auto-refresh, applying the metrics controls as they change, and delete confirmation.
(function () {
  "use strict";
  var root = document.documentElement;
  var stored = null;
  try { stored = localStorage.getItem("theme"); } catch (e) { /* storage may be off */ }
  if (stored === "dark" || stored === "light") { root.setAttribute("data-theme", stored); }
  root.classList.add("js");

  function current() {
    var t = root.getAttribute("data-theme");
    if (t) { return t; }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      var label = function () { toggle.textContent = current() === "dark" ? "Light theme" : "Dark theme"; };
      label();
      toggle.addEventListener("click", function () {
        var next = current() === "dark" ? "light" : "dark";
        root.setAttribute("data-theme", next);
        try { localStorage.setItem("theme", next); } catch (e) { /* ignore */ }
        label();
      });
    }
    var refresh = document.querySelector("[data-refresh]");
    if (refresh) { refresh.addEventListener("click", function () { location.reload(); }); }
    var auto = document.querySelector("[data-autorefresh]");
    var timer = null;
    function schedule(seconds) {
      if (timer) { clearTimeout(timer); timer = null; }
      if (seconds > 0) { timer = setTimeout(function () { location.reload(); }, seconds * 1000); }
    }
    if (auto) {
      var saved = "0";
      try { saved = localStorage.getItem("pgmoneta.autoRefreshSeconds") || "0"; } catch (e) { /* ignore */ }
      auto.value = saved;
      if (auto.value !== saved) { auto.value = "0"; }
      schedule(parseInt(auto.value, 10));
      auto.addEventListener("change", function () {
        try {
          if (auto.value === "0") { localStorage.removeItem("pgmoneta.autoRefreshSeconds"); }
          else { localStorage.setItem("pgmoneta.autoRefreshSeconds", auto.value); }
        } catch (e) { /* ignore */ }
        schedule(parseInt(auto.value, 10));
      });
    }
    var explore = document.querySelector("form[data-explore]");
    if (explore) {
      explore.querySelectorAll("select").forEach(function (s) {
        s.addEventListener("change", function () { explore.submit(); });
      });
      var search = explore.querySelector("input[type=search]");
      var pending = null;
      if (search) {
        search.addEventListener("input", function () {
          if (pending) { clearTimeout(pending); }
          var v = search.value.trim();
          if (v.length === 0 || v.length >= 3) {
            pending = setTimeout(function () { explore.submit(); }, 600);
          }
        });
      }
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  });
})();
