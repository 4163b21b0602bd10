// The quick chat on a server's page: streams through the app's own /v1/ endpoint (the signed-in
// session and its CSRF token, no key), keeps the conversation, shows time to first token and
// tokens per second. Without JavaScript the form posts to the server side as before.
(() => {
  const form = document.querySelector("form.chat-form[data-model]");
  if (!form || !window.fetch || !window.TextDecoder) return;
  const log = document.getElementById("chat-log");
  const stats = document.getElementById("chat-stats");
  const prompt = form.querySelector("textarea, input[name=prompt]");
  const send = form.querySelector("button[type=submit]");
  const clear = document.getElementById("chat-clear");
  const result = document.getElementById("chat-result");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const picker = document.getElementById("chat-image");  // a vision model's: an image goes inline as a data: URL
  const history = [];
  // The server-side chat's cap, or a quarter of the context (servers/promptfit.py); the gateway
  // lowers it to the room the model's context has left.
  const maxTokens = Number(form.dataset.maxTokens) || 256;

  function bubble(role, text) {
    const item = document.createElement("div");
    item.className = `chat-turn chat-${role}`;
    item.textContent = text;
    log.appendChild(item);
    return item;
  }

  // A tool call the model made: its name and arguments, as text (the quick chat runs no tools).
  function showToolCall(answer, call) {
    const item = document.createElement("div");
    item.className = "chat-tool-call";
    const name = Object.assign(document.createElement("code"), { className: "chat-tool-name", textContent: call.name });
    const args = Object.assign(document.createElement("pre"), { className: "chat-tool-arguments", textContent: call.arguments });
    item.append("Tool call: ", name, args);
    answer.after(item);
    return item;
  }

  function showError(message) {
    const item = bubble("error", message);
    item.setAttribute("role", "alert");
  }

  function readImage(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error("Could not read the image."));
      reader.readAsDataURL(file);
    });
  }

  async function ask(text, image) {
    const content = image ? [{ type: "text", text }, { type: "image_url", image_url: { url: image } }] : text;
    history.push({ role: "user", content });
    const asked = bubble("user", text);
    if (image) asked.append(Object.assign(document.createElement("img"), { className: "chat-image", src: image, alt: "The image sent" }));
    const answer = bubble("assistant", "");
    answer.classList.add("chat-streaming");
    send.disabled = true;
    stats.textContent = "Waiting for the first token…";
    const began = performance.now();
    let first = null;
    let tokens = 0;
    let reply = "";
    const calls = [];  // by the stream's index: {name, arguments}, arguments arriving in pieces
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ model: form.dataset.model, messages: history, stream: true, max_tokens: maxTokens }),
      });
      if (!response.ok) {
        let message = `The gateway answered ${response.status}.`;
        try { message = (await response.json()).error.message; } catch (_) { /* keep the status */ }
        throw new Error(message);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        const events = buffer.split("\n\n");
        buffer = events.pop();
        for (const event of events) {
          const data = event.replace(/^data: /, "").trim();
          if (!data || data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
          for (const call of delta.tool_calls || []) {
            const known = calls[call.index || 0] || (calls[call.index || 0] = { name: "", arguments: "" });
            known.name += (call.function && call.function.name) || "";
            known.arguments += (call.function && call.function.arguments) || "";
            if (first === null) first = performance.now();
          }
          const piece = delta.content;
          if (piece) {
            if (first === null) first = performance.now();
            tokens += 1;
            reply += piece;
            answer.textContent = reply;
          }
        }
      }
      calls.slice().reverse().forEach((call) => showToolCall(answer, call));
      history.push({ role: "assistant", content: reply });
      const ended = performance.now();
      const ttft = first === null ? null : first - began;
      const rate = first !== null && ended > first ? tokens / ((ended - first) / 1000) : null;
      stats.innerHTML = "";
      stats.append(
        `First token after `, Object.assign(document.createElement("span"), { className: "chat-ttft", textContent: ttft === null ? "–" : `${Math.round(ttft)} ms` }),
        " · ", Object.assign(document.createElement("span"), { className: "chat-speed", textContent: rate === null ? "– tokens/s" : `${rate.toFixed(1)} tokens/s` }),
        ` · ${tokens} tokens · ${history.length / 2} turn(s)`,
      );
      if (!reply) answer.textContent = calls.length ? "(no text: the model called a tool)" : "(an empty answer)";
    } catch (error) {
      history.pop();
      answer.remove();
      showError(error.message || String(error));
      stats.textContent = "";
    } finally {
      answer.classList.remove("chat-streaming");
      send.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    event.stopPropagation();
    const text = prompt.value.trim();
    if (!text) { showError("Write a prompt first."); return; }
    if (result) result.hidden = true;
    prompt.value = "";
    const file = picker && picker.files && picker.files[0];
    if (picker) picker.value = "";
    if (!file) { ask(text, null); return; }
    readImage(file).then((image) => ask(text, image), (error) => showError(error.message));
  }, true);

  clear.hidden = false;
  clear.addEventListener("click", () => {
    history.length = 0;
    log.replaceChildren();
    stats.textContent = "";
    prompt.focus();
  });
})();
