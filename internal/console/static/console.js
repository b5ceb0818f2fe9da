// Vigil's console: enhancements only; every page works without them.
// - Row selection: shift-click selects a range of checkboxes, the header
//   box selects the page, and a count shows the selection.
// - A command's page follows its results live through Server-Sent Events
//   (table#results[data-events]); text is set with textContent only.
"use strict";

(function () {
  function selection(table) {
    var boxes = Array.prototype.slice.call(table.querySelectorAll("tbody input[type=checkbox]"));
    var all = table.querySelector("thead input.select-all");
    var count = document.querySelector(".selected-count");
    var last = -1;
    function update() {
      var n = 0;
      boxes.forEach(function (b) {
        var row = b.closest("tr");
        if (b.checked) { n++; row.classList.add("selected"); } else { row.classList.remove("selected"); }
      });
      if (count) { count.textContent = "(" + n + " selected)"; }
      if (all) { all.checked = n > 0 && n === boxes.length; }
    }
    boxes.forEach(function (b, i) {
      b.addEventListener("click", function (ev) {
        if (ev.shiftKey && last >= 0) {
          var lo = Math.min(last, i), hi = Math.max(last, i);
          for (var j = lo; j <= hi; j++) { boxes[j].checked = b.checked; }
        }
        last = i;
        update();
      });
    });
    if (all) {
      all.addEventListener("click", function () {
        boxes.forEach(function (b) { b.checked = all.checked; });
        update();
      });
    }
    update();
  }

  function cell(row, cls, text) {
    var td = row.querySelector("td." + cls);
    if (td) { td.textContent = text; }
  }

  function live(table) {
    var url = table.getAttribute("data-events");
    if (!url || !window.EventSource) { return; }
    document.body.classList.add("js-live");
    var body = table.querySelector("tbody");
    var es = new EventSource(url);
    es.addEventListener("result", function (ev) {
      var r = JSON.parse(ev.data);
      var row = null;
      var rows = body.querySelectorAll("tr");
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].getAttribute("data-agent") === r.agent) { row = rows[i]; break; }
      }
      if (!row) {
        row = document.createElement("tr");
        row.setAttribute("data-agent", r.agent);
        var id = document.createElement("td");
        var a = document.createElement("a");
        a.setAttribute("href", "/agents/" + encodeURIComponent(r.agent));
        a.textContent = r.agent;
        id.appendChild(a);
        row.appendChild(id);
        ["hostname", "status", "executed", "output"].forEach(function (c) {
          var td = document.createElement("td");
          td.className = c;
          if (c === "status") { td.className = ""; td.appendChild(document.createElement("span")); }
          row.appendChild(td);
        });
        body.appendChild(row);
      }
      cell(row, "hostname", r.hostname);
      cell(row, "executed", r.executed);
      cell(row, "output", r.output);
      var st = row.querySelector("span.status") || row.querySelector("td:nth-child(3) span");
      if (st) { st.textContent = r.status; st.className = "status " + r.status; }
    });
    es.addEventListener("progress", function (ev) {
      var p = JSON.parse(ev.data);
      [["n-ok", p.OK], ["n-failed", p.Failed], ["n-pending", p.Pending], ["n-targeted", p.Targeted]].forEach(function (x) {
        var el = document.getElementById(x[0]);
        if (el) { el.textContent = String(x[1]); }
      });
      var bar = document.querySelector("#progress svg.bar");
      if (bar && p.Targeted > 0) {
        var ok = Math.floor(p.OK * 1000 / p.Targeted), failed = Math.floor(p.Failed * 1000 / p.Targeted);
        bar.querySelector(".okbar").setAttribute("width", String(ok));
        bar.querySelector(".failbar").setAttribute("x", String(ok));
        bar.querySelector(".failbar").setAttribute("width", String(failed));
        bar.setAttribute("aria-label", p.OK + " ok, " + p.Failed + " failed, " + p.Pending + " pending of " + p.Targeted);
      }
    });
    es.addEventListener("end", function () { es.close(); document.body.classList.remove("js-live"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.selectable").forEach(selection);
    var results = document.getElementById("results");
    if (results) { live(results); }
  });
})();
