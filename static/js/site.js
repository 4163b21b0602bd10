// Behaviour that pages used to carry inline, moved here for the Content-Security-Policy (scripts
// from 'self' only, no inline script or style attribute):
//   data-width="42.5"         sets the element's width in % (memory bars; CSSOM is not inline style)
//   data-copy-from="ID"       a button that copies the text of element ID
//   data-confirm="question"   a form that asks before it is submitted
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
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-pause-hidden")) { return; }
    var box = elt.getAttribute("data-poll-while-checked");
    var unticked = box && !(document.getElementById(box) || {}).checked;
    if (document.visibilityState !== "visible" || unticked) { event.preventDefault(); }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy-from]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy-from"));
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent).then(function () { button.textContent = "Copied"; });
    }
  });
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.hasAttribute && select.hasAttribute("data-autosubmit") && select.form) { select.form.requestSubmit(); }
  });
})();
