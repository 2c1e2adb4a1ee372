// Berth UI: progressive enhancement only. Every page works without this
// file: sorting links, the filter form and the delete forms go to the
// server. With it, tables sort and filter in place, copy buttons appear
// and deletes ask for confirmation.
"use strict";

(function () {
  // Sort a table by a column, in place: every tbody on its own (the
  // repositories page keeps its namespace groups), group header rows first.
  function sortTable(table, th, order) {
    var heads = Array.prototype.slice.call(th.parentNode.children);
    var col = heads.indexOf(th);
    var numeric = th.hasAttribute("data-numeric");
    Array.prototype.forEach.call(table.tBodies, function (tbody) {
      var rows = Array.prototype.filter.call(tbody.rows, function (r) {
        return !r.classList.contains("group");
      });
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-sort") || "";
        var y = b.cells[col].getAttribute("data-sort") || "";
        var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        if (c === 0) {
          c = (a.cells[0].getAttribute("data-sort") || "").localeCompare(b.cells[0].getAttribute("data-sort") || "");
        }
        return order === "desc" ? -c : c;
      });
      rows.forEach(function (r) { tbody.appendChild(r); });
    });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", order === "asc" ? "ascending" : "descending");
    if (window.history && window.URL) {
      var u = new URL(window.location.href);
      u.searchParams.set("sort", th.getAttribute("data-key"));
      u.searchParams.set("order", order);
      u.searchParams.delete("deleted");
      window.history.replaceState(null, "", u.toString());
    }
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-key]").forEach(function (th) {
      var link = th.querySelector("a");
      if (!link) { return; }
      link.addEventListener("click", function (e) {
        e.preventDefault();
        var cur = th.getAttribute("aria-sort");
        var order;
        if (cur === "ascending") { order = "desc"; }
        else if (cur === "descending") { order = "asc"; }
        else { order = th.hasAttribute("data-numeric") ? "desc" : "asc"; }
        sortTable(table, th, order);
      });
    });
  });

  // Filter the repositories as one types; the form still works on Enter.
  var filter = document.querySelector("input[data-filter]");
  if (filter) {
    var table = document.getElementById(filter.getAttribute("data-filter"));
    var count = document.getElementById("count");
    var total = count ? count.getAttribute("data-total") : "";
    if (filter.form) { filter.form.classList.add("js-filter"); }
    var apply = function () {
      if (!table) { return; }
      var q = filter.value.trim().toLowerCase();
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies, function (tbody) {
        var any = false;
        Array.prototype.forEach.call(tbody.rows, function (r) {
          var name = r.getAttribute("data-name");
          if (name === null) { return; }
          var match = q === "" || name.indexOf(q) !== -1;
          r.hidden = !match;
          if (match) { any = true; shown++; }
        });
        tbody.hidden = !any;
      });
      if (count) {
        count.textContent = (String(shown) === total ? total : shown + " of " + total) + " repositories";
      }
    };
    filter.addEventListener("input", apply);
    if (filter.form) {
      filter.form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
    }
  }

  // Copy buttons: shown only when this script runs.
  function copyText(text, done) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text, done); });
    } else {
      fallback(text, done);
    }
  }
  function fallback(text, done) {
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.className = "visually-hidden";
    document.body.appendChild(ta);
    ta.select();
    try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selectable */ }
    document.body.removeChild(ta);
  }
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var code = b.previousElementSibling;
      if (!code) { return; }
      copyText(code.textContent, function () {
        b.textContent = "Copied";
        setTimeout(function () { b.textContent = "Copy"; }, 1500);
      });
    });
  });

  // Deletes ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
    });
  });
})();
