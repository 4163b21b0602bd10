"""Whether a prompt fits the model's context, counted with the model's own tokenizer, so that a
prompt too long is refused with a message instead of being cut or mangled by the server. The
quick chat uses it; the gateway can ask the same question for its requests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from library.local import local_model_path, model_facts, read_config

ANSWER_TOKENS_MIN = 16  # room a prompt must leave for an answer worth reading


@dataclass(frozen=True)
class PromptFit:
    prompt_tokens: int | None  # None: the model's tokenizer is not on this machine
    context_length: int | None  # None: config.json does not say

    @property
    def room(self) -> int | None:
        """Tokens left for the answer; None when either figure is unknown."""
        if self.prompt_tokens is None or self.context_length is None:
            return None
        return self.context_length - self.prompt_tokens

    def answer_tokens(self, asked: int) -> int:
        """`asked` tokens for the answer, or fewer when the context has less room left (a server
        asked for more would run past the context the model was trained for)."""
        return asked if self.room is None else max(1, min(asked, self.room))

    def refusal(self) -> str:
        """Why the prompt cannot be sent ("" when it can)."""
        if self.room is None or self.room >= ANSWER_TOKENS_MIN:
            return ""
        return (
            f"The prompt is {self.prompt_tokens:,} tokens; the model's context holds {self.context_length:,} "
            f"and an answer needs at least {ANSWER_TOKENS_MIN} more. Shorten the prompt: nothing was sent."
        )


def prompt_fit(*, model: str, text: str) -> PromptFit:
    """How `text` fits the context of `model` (a repo id in the cache or a folder)."""
    folder = local_model_path(model)
    if folder is None:
        return PromptFit(None, None)
    context = model_facts(read_config(folder)).context_length
    tokenizer = _tokenizer(folder / "tokenizer.json")
    tokens = len(tokenizer.encode(text).ids) if tokenizer is not None else None
    return PromptFit(tokens, context)


def chat_answer_tokens(*, model: str, cap: int) -> int:
    """What one turn of the page's chat asks for: `cap`, or a quarter of the model's context when
    that is less, so that a conversation keeps room for more turns (the gateway lowers it further
    to the room a long prompt leaves)."""
    folder = local_model_path(model)
    context = model_facts(read_config(folder)).context_length if folder is not None else None
    return cap if context is None else max(ANSWER_TOKENS_MIN, min(cap, context // 4))


def token_texts(*, model: str, ids: list[int]) -> list[str] | None:
    """Each token's own text, decoded alone (what OpenAI's logprobs call `token`); None when the
    model's tokenizer is not on this machine."""
    folder = local_model_path(model)
    tokenizer = _tokenizer(folder / "tokenizer.json") if folder is not None else None
    if tokenizer is None:
        return None
    return [tokenizer.decode([token_id], skip_special_tokens=False) for token_id in ids]


@functools.lru_cache(maxsize=8)
def _tokenizer(path: Path) -> Tokenizer | None:
    """The model's fast tokenizer (the `tokenizers` library mlx-lm brings), loaded once per file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception:  # a missing or unreadable tokenizer.json: the count is unknown, not an error
        return None
