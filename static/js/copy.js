// Buttons with data-copy="<selector>" copy that element's text to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(
    () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); },
    () => { button.textContent = "Select and copy"; },
  );
});

// The cards are rendered without the request: snippets learn this app's address from the page.
const fillOrigins = () => document.querySelectorAll("[data-origin]").forEach((el) => { el.textContent = location.origin; });
document.addEventListener("DOMContentLoaded", fillOrigins);
document.addEventListener("htmx:afterSettle", fillOrigins);
