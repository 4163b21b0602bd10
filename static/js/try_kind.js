// The server page of an embeddings or rerank model: "compare two texts" (cosine similarity of two
// embeddings) or "rank these lines against a query", through the app's own /v1/ (the signed-in
// session and its CSRF token, no key).
(() => {
  const box = document.getElementById("try-kind");
  if (!box || !window.fetch) return;
  const first = document.getElementById("try-first");
  const second = document.getElementById("try-second");
  const run = document.getElementById("try-run");
  const result = document.getElementById("try-result");
  const csrf = box.querySelector("input[name=csrfmiddlewaretoken]").value;
  const model = box.dataset.model;

  async function call(path, body) {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ model, ...body }),
    });
    let data = null;
    try { data = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) throw new Error((data && data.error && data.error.message) || `The gateway answered ${response.status}.`);
    return data;
  }

  function cosine(a, b) {
    let dot = 0, na = 0, nb = 0;
    for (let i = 0; i < a.length; i += 1) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
    return na && nb ? dot / Math.sqrt(na * nb) : 0;
  }

  function show(...nodes) { result.replaceChildren(...nodes); }

  async function compare() {
    const data = await call("/v1/embeddings", { input: [first.value, second.value], encoding_format: "float" });
    const [a, b] = data.data.map((item) => item.embedding);
    const score = Object.assign(document.createElement("strong"), { className: "try-similarity", textContent: cosine(a, b).toFixed(4) });
    show("Cosine similarity: ", score, ` · ${a.length} dimensions · ${data.usage.prompt_tokens} tokens`);
  }

  async function rank() {
    const lines = second.value.split("\n").map((line) => line.trim()).filter(Boolean);
    const data = await call("/v1/rerank", { query: first.value, documents: lines });
    const list = document.createElement("ol");
    list.className = "try-ranking";
    for (const item of data.results) {
      const row = document.createElement("li");
      row.append(Object.assign(document.createElement("code"), { textContent: item.relevance_score.toFixed(4) }), ` ${lines[item.index]}`);
      list.appendChild(row);
    }
    show(list);
  }

  run.addEventListener("click", async () => {
    if (!first.value.trim() || !second.value.trim()) { show("Fill in both fields first."); return; }
    run.disabled = true;
    show("Waiting for the model…");
    try {
      await (box.dataset.kind === "embeddings" ? compare() : rank());
    } catch (error) {
      const item = Object.assign(document.createElement("p"), { className: "chat-turn chat-error", textContent: error.message || String(error) });
      item.setAttribute("role", "alert");
      show(item);
    } finally {
      run.disabled = false;
    }
  });
})();
