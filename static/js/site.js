// Behaviour that pages used to carry inline, moved here for the Content-Security-Policy (scripts
// from 'self' only, no inline script or style attribute):
//   data-width="42.5"         sets the element's width in % (memory bars; CSSOM is not inline style)
//   data-copy="text"         a button that copies that text (also over plain http, without navigator.clipboard)
//   data-copy-from="#sel"    a button that copies the text of the element the selector finds
//   data-confirm="question"   a form that asks before it is submitted
//   data-name-follows-model   a form whose name field follows its model field (last path part) until typed over
//   data-autosubmit           a select that submits its form when changed
//   data-pause-hidden         an htmx poll that skips its requests while the tab is hidden
//   data-poll-while-checked="ID"  ... and while checkbox ID is not ticked
// (htmx's own trigger filters, [document.visibilityState === 'visible'], would need eval.)
(function () {
  "use strict";
  function applyWidths(root) {
    var bars = root.querySelectorAll ? root.querySelectorAll("[data-width]") : [];
    for (var i = 0; i < bars.length; i++) {
      var value = parseFloat(bars[i].getAttribute("data-width"));
      if (isFinite(value)) { bars[i].style.width = Math.max(0, Math.min(100, value)) + "%"; }
    }
  }
  document.addEventListener("DOMContentLoaded", function () { applyWidths(document); });
  document.addEventListener("htmx:load", function (event) { applyWidths(event.target); });
  // New content is loaded only when it settles: sized at once instead (a morphed bar would
  // otherwise show no width until then).
  document.addEventListener("htmx:afterSwap", function (event) { applyWidths(event.detail.target); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { applyWidths(event.target); });
  // A dashboard card replaced by its own button's answer: the page's version of it no longer says
  // what it shows, so it is taken out and the next poll sends that card whole (servers/dashboard/render.py).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target, version = document.getElementById("live-version");
    if (!version || !target || !target.classList || !target.classList.contains("server-card")) { return; }
    var pk = target.id.replace("server-card-", "");
    version.value = version.value.split(".").filter(function (entry) { return entry.split("~")[0] !== pk; }).join(".");
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-pause-hidden")) { return; }
    var box = elt.getAttribute("data-poll-while-checked");
    var unticked = box && !(document.getElementById(box) || {}).checked;
    if (document.visibilityState !== "visible" || unticked) { event.preventDefault(); }
  });
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  // A new profile's name follows the model until the person types a name of their own: only an
  // empty name or the one suggested for the current model is replaced.
  function nameFollowsModel(form) {
    var name = form.querySelector("[name=name]");
    var model = form.querySelector("[name=model]");
    if (!name || !model) { return; }
    function fromModel() { return model.value.trim().replace(/\/+$/, "").split("/").pop().toLowerCase(); }
    var suggested = fromModel();
    model.addEventListener("input", function () {
      if (name.value !== "" && name.value !== suggested) { return; }
      suggested = fromModel();
      name.value = suggested;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-name-follows-model]").forEach(nameFollowsModel);
  });
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.hasAttribute && select.hasAttribute("data-autosubmit") && select.form) { select.form.requestSubmit(); }
  });

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var done = false;
    try { done = document.execCommand("copy"); } catch (error) { done = false; }
    document.body.removeChild(area);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button) { return; }
    var source = button.hasAttribute("data-copy-from") ? document.querySelector(button.getAttribute("data-copy-from")) : null;
    var text = source ? source.textContent.trim() : button.getAttribute("data-copy");
    if (!text) { return; }
    if (!button.hasAttribute("data-label")) { button.setAttribute("data-label", button.textContent); }
    var label = button.getAttribute("data-label");
    var says = Boolean(source);  // a "Copy" button next to a snippet says "Copied" itself
    copy(text).then(function () {
      button.setAttribute("data-copied", "Copied");
      if (says) { button.textContent = "Copied"; }
    }, function () {
      button.setAttribute("data-copied", "Select and copy: " + text);
    });
    setTimeout(function () {
      button.removeAttribute("data-copied");
      if (says) { button.textContent = label; }
    }, 2500);
  });

  // The profile form shows the chosen engine's options only (the server clears the other's on save).
  document.addEventListener("change", function (event) {
    if (!event.target.matches || !event.target.matches("#profile-form select[name=engine]")) { return; }
    var engine = event.target.value;
    document.querySelectorAll("#profile-form [data-engine]").forEach(function (el) {
      el.hidden = el.getAttribute("data-engine") !== engine;
    });
  });

})();
