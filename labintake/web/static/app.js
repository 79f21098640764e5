// labintake screen behaviour: CSRF header for HTMX, keyboard shortcuts, queue row movement.
// No inline scripts anywhere (the CSP forbids them); everything is wired here.
(function () {
  "use strict";

  // The server counts "due today" in the coder's own time zone.
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone) document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; samesite=strict";
  } catch (ignored) { /* UTC then */ }

  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.body.dataset.csrf;
    if (token) {
      event.detail.headers["X-CSRF-Token"] = token;
    }
  });

  // An error answer (409, 403, 422) carries a message to show in #flash.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // A save refused because the order changed meanwhile reloads the order with its current
  // state. What the coder typed in that form (the office's answer, a reason, a code) is kept
  // and put back after the reload, never thrown away; hidden fields (the row version) are not.
  var DRAFT = "labintake:draft:" + location.pathname;
  var KEPT = "textarea, select, input:not([type]), input[type=text], input[type=search], input[type=date], input[type=tel]";
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || !form.id) return;
    var values = {};
    form.querySelectorAll(KEPT).forEach(function (el) { if (el.name) values[el.name] = el.value; });
    try { sessionStorage.setItem(DRAFT, JSON.stringify({ form: form.id, values: values })); } catch (ignored) { /* private mode */ }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    var redirect = xhr ? xhr.getResponseHeader("HX-Redirect") || "" : "";
    if (redirect.indexOf("stale=1") < 0) {
      try { sessionStorage.removeItem(DRAFT); } catch (ignored) { /* nothing kept */ }
    }
  });
  function restoreDraft() {
    if (location.search.indexOf("stale=1") < 0) return;
    var saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(DRAFT) || "null"); sessionStorage.removeItem(DRAFT); } catch (ignored) { return; }
    if (!saved || !saved.form) return;
    var form = document.getElementById(saved.form);
    if (!form) return;
    Object.keys(saved.values || {}).forEach(function (name) {
      var el = form.querySelector('[name="' + CSS.escape(name) + '"]');
      if (!el || el.type === "hidden") return;
      var value = saved.values[name];
      if (el.tagName === "SELECT" && !Array.prototype.some.call(el.options, function (o) { return o.value === value; })) return;
      el.value = value;
    });
    var details = form.closest("details");
    if (details) details.open = true;
    var note = document.createElement("p");
    note.className = "hint kept-draft";
    note.setAttribute("role", "status");
    note.textContent = "What you typed is kept here. Check the order's current state, then save again.";
    form.insertBefore(note, form.firstChild);
    var first = form.querySelector("textarea, input:not([type=hidden]), select");
    if (first) first.focus();
  }
  document.addEventListener("DOMContentLoaded", restoreDraft);

  // After each action the page says where the next thing to do is (data-autofocus: the
  // office's answer, the replacement code, the next open hold, the Release button, or, on a
  // verified order the release worker sends by itself, the next order).
  // Kept typing (restoreDraft) and a link to a part of the page (#notes) come first.
  document.addEventListener("DOMContentLoaded", function () {
    if (location.hash || location.search.indexOf("stale=1") >= 0) return;
    var next = document.querySelector("[data-autofocus]");
    if (!next) return;
    var panel = next.closest("details");
    if (panel) panel.open = true;
    next.focus({ preventScroll: true });
    next.scrollIntoView({ block: "nearest" });
  });

  // Timestamps arrive in UTC; show them in the reader's local time, UTC kept as a tooltip.
  function localTimes(root) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.title = el.textContent;
      el.textContent = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) +
        " " + pad(when.getHours()) + ":" + pad(when.getMinutes());
      el.dataset.local = "1";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    localTimes(event.target);
    // An error shown beside a field inside a closed panel opens the panel, and focus goes to
    // the field, so the coder sees what to fix.
    var note = event.target;
    if (note instanceof Element && note.hasAttribute("data-error-for") && note.textContent.trim()) {
      var form = note.closest("form");
      var field = form && form.querySelector('[name="' + CSS.escape(note.getAttribute("data-error-for")) + '"]');
      var panel = field && field.closest("details");
      if (panel) panel.open = true;
      if (field) field.focus();
    }
  });

  // Queue filters apply as soon as one changes (a typed value when it is complete: on change).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (!(el instanceof Element) || el.closest("details.columns")) return;
    var form = el.closest("form[data-apply-on-change]");
    if (form && el.name !== "q") form.requestSubmit();
  });

  // Plain (non-HTMX) forms: one submit only, whatever the clicks and Enters.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post")) return;
    if (form.dataset.submitted) { event.preventDefault(); return; }
    form.dataset.submitted = "1";
    form.querySelectorAll("[data-disable-on-submit]").forEach(function (b) { b.disabled = true; });
  });

  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;  // back from the next page: forms may be used again
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      form.querySelectorAll("[data-disable-on-submit]").forEach(function (b) { b.disabled = false; });
    });
  });

  function typing(target) {
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr[data-href]"));
  }

  function moveRow(step) {
    var all = rows();
    if (!all.length) return;
    var index = all.indexOf(document.activeElement);
    var next = index < 0 ? 0 : Math.min(all.length - 1, Math.max(0, index + step));
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  }

  // Esc closes what is open, innermost first: the keyboard help, the panel (details) holding
  // focus, then any open panel of the order's actions, then a message in #flash. Focus
  // goes back to the panel's summary, so the coder keeps their place.
  function closePanels(target) {
    var help = document.getElementById("help");
    if (help && !help.hidden) { help.hidden = true; return true; }
    var panel = target instanceof Element ? target.closest("details[open]") : null;
    if (!panel) panel = document.querySelector(".order-actions details[open], details.columns[open]");
    if (panel) {
      panel.open = false;
      var summary = panel.querySelector("summary");
      if (summary) summary.focus();
      return true;
    }
    var flash = document.getElementById("flash");
    if (flash && flash.textContent.trim()) { flash.innerHTML = ""; return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    // Ctrl+Enter (Cmd+Enter) in a text box saves its form, as Enter does in a one-line field.
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target instanceof Element) {
      var owner = event.target.closest("form");
      if (owner && event.target.tagName === "TEXTAREA") {
        event.preventDefault();
        owner.requestSubmit();
        return;
      }
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      var inPanel = event.target instanceof Element && event.target.closest("details[open]");
      if (typing(event.target) && !inPanel) {
        event.target.blur();
        return;
      }
      if (closePanels(event.target)) event.preventDefault();
      return;
    }
    if (typing(event.target)) return;
    if (event.key === "Enter" && event.target.dataset && event.target.dataset.href) {
      window.location.href = event.target.dataset.href;
      event.preventDefault();
      return;
    }
    // Enter with nothing selected on the queue opens the first (most urgent) order.
    if (event.key === "Enter" && event.target === document.body && rows().length) {
      window.location.href = rows()[0].dataset.href;
      event.preventDefault();
      return;
    }
    if (event.key === "j" || event.key === "ArrowDown") {
      if (rows().length) { moveRow(1); event.preventDefault(); }
      return;
    }
    if (event.key === "k" || event.key === "ArrowUp") {
      if (rows().length) { moveRow(-1); event.preventDefault(); }
      return;
    }
    var target = document.querySelector('[data-key="' + CSS.escape(event.key) + '"]');
    if (!target) return;
    event.preventDefault();
    if (target.dataset.toggle) {
      var panel = document.querySelector(target.dataset.toggle);
      if (panel) panel.hidden = !panel.hidden;
    } else if (target.tagName === "A" || target.tagName === "BUTTON") {
      target.focus();
      target.click();
    } else {
      var details = target.closest("details");
      if (details) details.open = true;
      target.focus();
      target.scrollIntoView({ block: "center" });
    }
  });

  document.addEventListener("click", function (event) {
    var el = event.target;
    if (!(el instanceof Element)) return;
    var toggle = el.closest("[data-toggle]");
    if (toggle) {
      var panel = document.querySelector(toggle.dataset.toggle);
      if (panel) panel.hidden = !panel.hidden;
      return;
    }
    if (el.closest("[data-print]")) {
      window.print();
      return;
    }
    var row = el.closest("tr[data-href]");
    if (row && !el.closest("a, button, input, select, textarea")) {
      window.location.href = row.dataset.href;
    }
  });
})();
