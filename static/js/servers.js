// The server page's log: keep following the bottom while new lines arrive (unless the reader
// scrolled up), and keep only the newest chunks so a chatty server cannot grow the page forever.
(function () {
  "use strict";
  var MAX_CHUNKS = 400;
  var stick = true;
  function logBox() { return document.getElementById("log-lines"); }
  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 24; }
  document.addEventListener("DOMContentLoaded", function () {
    var box = logBox();
    if (box) { box.scrollTop = box.scrollHeight; }
  });
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var box = logBox();
    if (box && event.detail.target === box) { stick = atBottom(box); }
  });
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    var box = logBox();
    if (!box || event.detail.target !== box) { return; }
    while (box.childElementCount > MAX_CHUNKS) { box.removeChild(box.firstElementChild); }
    if (stick) { box.scrollTop = box.scrollHeight; }
  });
})();
