// Site-wide: a button with data-copy="text" copies that text with one click, one with
// data-copy-from="<selector>" copies that element's text (also over plain http on another
// machine, where navigator.clipboard is missing), and says so for a moment.
(function () {
  "use strict";
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
    copy(text).then(function () {
      button.setAttribute("data-copied", "Copied");
    }, function () {
      button.setAttribute("data-copied", "Select and copy: " + text);
    });
    setTimeout(function () { button.removeAttribute("data-copied"); }, 2500);
  });

  // Cards are rendered without the request (and cached): snippets learn this app's address from the page.
  function fillOrigins() {
    document.querySelectorAll("[data-origin]").forEach(function (el) { el.textContent = location.origin; });
  }
  document.addEventListener("DOMContentLoaded", fillOrigins);
  document.addEventListener("htmx:afterSettle", fillOrigins);
})();
