"""OpenAI's logprobs shape for what mlx-lm's server answers: it names each token by its id only
(and the top alternatives by id and text), so the text and bytes of each are filled in here from
the model's own tokenizer."""

from __future__ import annotations

from typing import Any

from servers.promptfit import token_texts


def logprobs_complete(data: dict[str, Any], *, model: str) -> None:
    """Give every logprobs entry of the answer its `token`, `bytes` and `top_logprobs`, in place."""
    for choice in data.get("choices") or []:
        content = (choice.get("logprobs") or {}).get("content") if isinstance(choice, dict) else None
        if not isinstance(content, list):
            continue
        entries = [entry for entry in content if isinstance(entry, dict)]
        alternatives = [top for entry in entries for top in entry.get("top_logprobs") or [] if isinstance(top, dict)]
        _fill(entries + alternatives, model=model)
        for entry in entries:
            entry.setdefault("top_logprobs", [])


def _fill(entries: list[dict[str, Any]], *, model: str) -> None:
    missing = [
        entry for entry in entries if not isinstance(entry.get("token"), str) and isinstance(entry.get("id"), int)
    ]
    texts = token_texts(model=model, ids=[entry["id"] for entry in missing]) if missing else []
    for entry, text in zip(missing, texts or [], strict=False):
        entry["token"] = text
    for entry in entries:
        if isinstance(entry.get("token"), str):
            entry["bytes"] = list(entry["token"].encode())
