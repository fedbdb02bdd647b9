// tracebox UI behaviour. Loaded with `defer` from /static: the
// Content-Security-Policy allows no inline script, so every handler is
// attached here. Everything works without this file; it adds keyboard
// navigation, local times, span switching without reloads, tabs and copy.
// Data from traces is only ever assigned as text (textContent, value),
// never parsed as HTML; span panels come pre-escaped from the server.
(function () {
  "use strict";
  var doc = document;
  doc.documentElement.classList.add("has-js");

  // ---- local times ---------------------------------------------------------
  function formatTime(d) {
    var opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (d.getFullYear() !== new Date().getFullYear()) opts.year = "numeric";
    return d.toLocaleString(undefined, opts);
  }
  function localize(root) {
    root.querySelectorAll("time[data-local]").forEach(function (t) {
      var iso = t.getAttribute("datetime");
      var d = new Date(iso);
      if (isNaN(d.getTime())) return;
      t.title = iso;
      t.textContent = formatTime(d);
    });
  }

  // ---- query form: time range, clean URLs, filter errors, examples --------
  function setupQueryForm() {
    var form = doc.querySelector("form[data-query-form]");
    if (!form) return;
    var range = form.querySelector("[data-range]");
    var custom = form.querySelector("[data-custom-range]");
    var tz = form.querySelector("[data-tz]");
    if (tz) {
      var note = form.querySelector("[data-tz-note]");
      if (note) note.textContent = "Times in your time zone";
    }
    if (range && custom) {
      range.addEventListener("change", function () {
        if (range.value === "custom") {
          custom.hidden = false;
          var first = custom.querySelector("input");
          if (first) first.focus();
        } else {
          custom.hidden = true;
          form.requestSubmit();
        }
      });
    }
    form.addEventListener("submit", function () {
      var isCustom = range && range.value === "custom";
      if (tz) tz.value = isCustom ? String(new Date().getTimezoneOffset()) : "";
      // Leave empty and irrelevant fields out of the URL: links stay short.
      form.querySelectorAll("input[name], select[name]").forEach(function (el) {
        var rangeField = el.name === "from" || el.name === "to" || el.name === "tz";
        if ((rangeField && !isCustom) || el.value === "") el.disabled = true;
      });
    });
    var filter = form.querySelector("#filter");
    if (filter && filter.dataset.errorPos) {
      var pos = parseInt(filter.dataset.errorPos, 10);
      if (!isNaN(pos)) {
        filter.focus();
        try { filter.setSelectionRange(pos, pos); } catch (e) { /* not all inputs */ }
      }
    }
    form.querySelectorAll("[data-insert]").forEach(function (b) {
      b.addEventListener("click", function () {
        if (!filter) return;
        var ex = b.getAttribute("data-insert");
        filter.value = filter.value.trim() ? filter.value.trim() + " AND " + ex : ex;
        filter.focus();
      });
    });
  }
  window.addEventListener("pageshow", function () {
    doc.querySelectorAll("form[data-query-form] [disabled]").forEach(function (el) { el.disabled = false; });
  });

  // ---- clickable rows and j/k ---------------------------------------------
  function rows() {
    return Array.prototype.slice.call(doc.querySelectorAll("table[data-nav] tbody tr[data-href]"));
  }
  function setupRows() {
    rows().forEach(function (tr) {
      tr.addEventListener("click", function (e) {
        if (e.target.closest("a, button, input, select, textarea, form")) return;
        var url = tr.getAttribute("data-href");
        if (e.metaKey || e.ctrlKey) window.open(url, "_blank", "noopener");
        else location.href = url;
      });
    });
  }
  function moveRow(delta) {
    var list = rows();
    if (!list.length) return false;
    var i = list.findIndex(function (r) { return r.classList.contains("cursor"); });
    var next = i < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, i + delta));
    if (i >= 0) list[i].classList.remove("cursor");
    list[next].classList.add("cursor");
    list[next].scrollIntoView({ block: "nearest" });
    return true;
  }
  function openRow() {
    var cur = doc.querySelector("table[data-nav] tbody tr.cursor, [data-turns] .turn.cursor");
    if (cur) { location.href = cur.getAttribute("data-href"); return true; }
    return false;
  }
  // A session's transcript: j/k step through its turns.
  function moveTurn(delta) {
    var list = Array.prototype.slice.call(doc.querySelectorAll("[data-turns] .turn"));
    if (!list.length) return false;
    var i = list.findIndex(function (t) { return t.classList.contains("cursor"); });
    var next = i < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, i + delta));
    if (i >= 0) list[i].classList.remove("cursor");
    list[next].classList.add("cursor");
    list[next].scrollIntoView({ block: "nearest" });
    return true;
  }

  // ---- span tree: switch spans without reloading --------------------------
  var loadSeq = 0;
  function selectNode(node) {
    var tree = node.closest("[data-tree]");
    var panel = doc.getElementById("span-panel");
    if (!tree || !panel) { location.href = node.href; return; }
    tree.querySelectorAll(".node.selected").forEach(function (n) {
      n.classList.remove("selected");
      n.setAttribute("aria-selected", "false");
    });
    node.classList.add("selected");
    node.setAttribute("aria-selected", "true");
    node.scrollIntoView({ block: "nearest" });
    doc.querySelectorAll("[data-back-span]").forEach(function (i) { i.value = node.dataset.span; });
    var check = doc.querySelector("[data-span-check]");
    if (check) check.value = node.dataset.span;
    var name = doc.querySelector("[data-span-name]");
    if (name) name.textContent = node.dataset.name;
    history.replaceState(null, "", node.getAttribute("href"));
    var seq = ++loadSeq;
    fetch(node.dataset.panel, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        if (seq !== loadSeq) return; // a later click won
        var parsed = new DOMParser().parseFromString(html, "text/html");
        panel.replaceChildren.apply(panel, Array.prototype.slice.call(parsed.body.childNodes));
        enhance(panel);
      })
      .catch(function () { location.href = node.href; });
  }
  function setupTree() {
    var tree = doc.querySelector("[data-tree]");
    if (!tree) return;
    tree.addEventListener("click", function (e) {
      var n = e.target.closest(".node");
      if (!n || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
      e.preventDefault();
      selectNode(n);
    });
    var sel = tree.querySelector(".node.selected");
    if (sel) sel.scrollIntoView({ block: "nearest" });
  }
  function moveNode(delta) {
    var nodes = Array.prototype.slice.call(doc.querySelectorAll("[data-tree] .node"));
    if (!nodes.length) return false;
    var i = nodes.findIndex(function (n) { return n.classList.contains("selected"); });
    var next = Math.min(nodes.length - 1, Math.max(0, (i < 0 ? -1 : i) + delta));
    if (next !== i) selectNode(nodes[next]);
    return true;
  }

  // ---- tabs, JSON, copy ------------------------------------------------------
  function setupTabs(root) {
    root.querySelectorAll("[data-tabs]").forEach(function (nav) {
      var tabs = Array.prototype.slice.call(nav.querySelectorAll("[data-tab]"));
      if (!tabs.length) return;
      var scope = nav.parentElement;
      function show(id, remember) {
        tabs.forEach(function (t) {
          var on = t.dataset.tab === id;
          t.setAttribute("aria-selected", on ? "true" : "false");
          t.tabIndex = on ? 0 : -1;
          var p = scope.querySelector("#" + t.dataset.tab);
          if (p) p.classList.toggle("active", on);
        });
        if (remember) { try { sessionStorage.setItem("tracebox-tab", id); } catch (e) { /* private mode */ } }
      }
      tabs.forEach(function (t, i) {
        t.addEventListener("click", function (e) { e.preventDefault(); show(t.dataset.tab, true); });
        t.addEventListener("keydown", function (e) {
          var d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
          if (!d) return;
          e.preventDefault();
          var n = tabs[(i + d + tabs.length) % tabs.length];
          show(n.dataset.tab, true);
          n.focus();
        });
      });
      var remembered = null;
      try { remembered = sessionStorage.getItem("tracebox-tab"); } catch (e) { /* private mode */ }
      var start = tabs.some(function (t) { return t.dataset.tab === remembered; }) ? remembered : tabs[0].dataset.tab;
      show(start, false);
    });
  }
  function setupJson(root) {
    root.querySelectorAll("[data-json-toggle]").forEach(function (b) {
      b.addEventListener("click", function () {
        var open = b.getAttribute("data-json-toggle") === "open";
        var scope = b.closest(".tab-panel") || root;
        scope.querySelectorAll("details.jnode").forEach(function (d) { d.open = open; });
      });
    });
  }
  function setupCopy(root) {
    root.querySelectorAll("[data-copy]").forEach(function (b) {
      b.addEventListener("click", function () {
        var target = doc.querySelector(b.getAttribute("data-copy"));
        if (!target) return;
        var text = target.textContent;
        var done = function () { b.classList.add("copied"); setTimeout(function () { b.classList.remove("copied"); }, 1200); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
        } else {
          selectText(target);
        }
      });
    });
  }
  function selectText(el) {
    var r = doc.createRange();
    r.selectNodeContents(el);
    var s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }

  // ---- feedback form: thumbs and score exclude each other -----------------
  function setupFeedback() {
    var form = doc.getElementById("feedback-form");
    if (!form) return;
    var score = form.querySelector("[name=score]");
    var radios = form.querySelectorAll("[name=verdict]");
    radios.forEach(function (r) {
      r.addEventListener("change", function () { if (score) score.value = ""; });
      // A second click on the chosen thumb clears it.
      r.addEventListener("click", function () {
        if (r.dataset.was === "1") { r.checked = false; r.dataset.was = ""; }
        else { radios.forEach(function (o) { o.dataset.was = ""; }); r.dataset.was = "1"; }
      });
    });
    if (score) score.addEventListener("input", function () {
      if (score.value) radios.forEach(function (r) { r.checked = false; r.dataset.was = ""; });
    });
    // "Your name" is remembered in this browser for the next feedback.
    doc.querySelectorAll("input[data-remember]").forEach(function (input) {
      var key = "tracebox-" + input.getAttribute("data-remember");
      try {
        if (!input.value) input.value = localStorage.getItem(key) || "";
        input.form.addEventListener("submit", function () { localStorage.setItem(key, input.value); });
      } catch (e) { /* storage disabled */ }
    });
  }

  // ---- menus and the shortcuts dialog --------------------------------------
  function setupMenus() {
    doc.addEventListener("click", function (e) {
      doc.querySelectorAll("details[data-menu][open]").forEach(function (d) {
        if (!d.contains(e.target)) d.open = false;
      });
    });
    var dialog = doc.getElementById("shortcuts");
    doc.querySelectorAll("[data-open-shortcuts]").forEach(function (b) {
      b.addEventListener("click", function () { if (dialog) dialog.showModal(); });
    });
  }

  // ---- keyboard --------------------------------------------------------------
  var gAt = 0;
  function onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    var typing = t && t.closest && t.closest("input, textarea, select, [contenteditable]");
    if (e.key === "Escape") {
      if (typing) t.blur();
      doc.querySelectorAll("details[data-menu][open]").forEach(function (d) { d.open = false; });
      return;
    }
    if (typing) return;
    if (gAt && Date.now() - gAt < 1500) {
      gAt = 0;
      var link = doc.querySelector('.nav a[data-key="' + e.key + '"]');
      if (link) { e.preventDefault(); location.href = link.href; }
      return;
    }
    var el;
    switch (e.key) {
      case "/":
        el = doc.getElementById("filter") || doc.querySelector("[data-slash]");
        if (el) { e.preventDefault(); el.focus(); el.select(); }
        break;
      case "s":
        el = doc.getElementById("q");
        if (el) { e.preventDefault(); el.focus(); el.select(); }
        break;
      case "?":
        el = doc.getElementById("shortcuts");
        if (el) { e.preventDefault(); el.showModal(); }
        break;
      case "g":
        gAt = Date.now();
        break;
      case "j":
      case "k":
        var d = e.key === "j" ? 1 : -1;
        if (moveRow(d) || moveNode(d) || moveTurn(d)) e.preventDefault();
        break;
      case "Enter":
      case "o":
        if (openRow()) e.preventDefault();
        break;
      case "]":
      case "[":
        el = doc.querySelector('[data-page="' + (e.key === "]" ? "next" : "prev") + '"]');
        if (el) { e.preventDefault(); location.href = el.href; }
        break;
      case "f":
        el = doc.getElementById("feedback-form");
        if (el) {
          e.preventDefault();
          el.scrollIntoView({ block: "center" });
          var first = el.querySelector("input[type=radio]");
          if (first) first.focus();
        }
        break;
    }
  }

  function enhance(root) {
    localize(root);
    setupTabs(root);
    setupJson(root);
    setupCopy(root);
  }

  function init() {
    enhance(doc);
    setupQueryForm();
    setupRows();
    setupTree();
    setupFeedback();
    setupMenus();
    doc.addEventListener("keydown", onKey);
  }
  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", init);
  else init();
})();
