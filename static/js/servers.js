// The server page's log: show or hide the supervisor's /health probe lines, filter lines by text,
// keep following the bottom while new lines arrive (unless the reader
// scrolled up), and keep only the newest chunks so a chatty server cannot grow the page forever.
(function () {
  "use strict";
  var MAX_CHUNKS = 400;
  var stick = true;
  function logBox() { return document.getElementById("log-lines"); }
  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 24; }
  function filterText() {
    var input = document.getElementById("log-filter");
    return input ? input.value.trim().toLowerCase() : "";
  }
  function applyFilter(root) {
    var text = filterText();
    root.querySelectorAll(".log-line").forEach(function (line) {
      line.hidden = text !== "" && line.textContent.toLowerCase().indexOf(text) === -1;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var box = logBox();
    if (!box) { return; }
    box.scrollTop = box.scrollHeight;
    var health = document.getElementById("log-show-health");
    health.addEventListener("change", function () { box.classList.toggle("show-health", health.checked); });
    document.getElementById("log-filter").addEventListener("input", function () { applyFilter(box); });
  });
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var box = logBox();
    if (box && event.detail.target === box) { stick = atBottom(box); }
  });
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    var box = logBox();
    if (!box || event.detail.target !== box) { return; }
    while (box.childElementCount > MAX_CHUNKS) { box.removeChild(box.firstElementChild); }
    if (filterText()) { applyFilter(box); }
    if (stick) { box.scrollTop = box.scrollHeight; }
  });
})();
