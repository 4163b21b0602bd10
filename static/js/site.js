// Site-wide: a button with data-copy="text" copies that text with one click (also over plain
// http on another machine, where navigator.clipboard is missing) and says so for a moment.
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
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var text = button.getAttribute("data-copy");
    copy(text).then(function () {
      button.setAttribute("data-copied", "Copied");
    }, function () {
      button.setAttribute("data-copied", "Select and copy: " + text);
    });
    setTimeout(function () { button.removeAttribute("data-copied"); }, 2500);
  });
})();
