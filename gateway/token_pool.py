"""Counting a prompt's tokens in a process of its own. The chat template that renders the prompt is
a Jinja program that whoever made the profile or published the model wrote; rendered in a web
worker, a template that loops for hours would hold that worker's thread (and its pages) as long.
Here it holds one counting process, which is ended after `COUNT_TIMEOUT` seconds and started anew.

The child imports only transformers (no Django): the functions it runs are the ones below
`# --- in the counting process ---`."""

from __future__ import annotations

import asyncio
import atexit
import copy
import functools
import json
import multiprocessing
import threading
from multiprocessing.pool import Pool
from typing import Any

COUNT_TIMEOUT = 60.0  # seconds, the first count's transformers import and tokenizer load included

_pool: Pool | None = None
_lock = threading.Lock()


class CountFailed(Exception):
    """The template refused the conversation or the tokenizer could not be read; says which."""


class CountTimedOut(Exception):
    """The template ran past COUNT_TIMEOUT; its process was ended."""


def _counting_pool() -> Pool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = multiprocessing.get_context("spawn").Pool(1)
            atexit.register(_pool.terminate)  # before the interpreter tears down what its finaliser needs
        return _pool


def _pool_end(pool: Pool) -> None:
    global _pool
    with _lock:
        pool.terminate()
        if _pool is pool:
            _pool = None


async def tokens_counted(
    folder: str, messages: list[dict[str, Any]], tools: Any, template_kwargs: dict[str, Any]
) -> int:
    """The prompt's length in tokens, rendered by the model's tokenizer and template in the
    counting process; awaited off the worker's threads."""
    pool = _counting_pool()
    pending = pool.apply_async(count_in_child, (folder, messages, tools, template_kwargs))
    try:
        answer: tuple[bool, int | str] = await asyncio.to_thread(pending.get, COUNT_TIMEOUT)
    except multiprocessing.TimeoutError:
        _pool_end(pool)
        raise CountTimedOut from None
    ok, value = answer
    if not ok:
        raise CountFailed(str(value))
    return int(value)


# --- in the counting process ---


@functools.lru_cache(maxsize=8)
def _tokenizer(folder: str) -> Any:
    """The model's tokenizer as mlx-lm's server loads it (transformers' AutoTokenizer), once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def as_the_server_renders(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as mlx-lm's server hands them to the template (its `process_message_content`):
    text parts joined, no content as "", tool call arguments as objects."""
    rendered = copy.deepcopy(messages)
    for message in rendered:
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        elif content is None:
            message["content"] = ""
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            if isinstance(function.get("arguments"), str) and function["arguments"]:
                function["arguments"] = json.loads(function["arguments"])
    return rendered


def count_in_child(
    folder: str, messages: list[dict[str, Any]], tools: Any, template_kwargs: dict[str, Any]
) -> tuple[bool, int | str]:
    """(True, tokens) or (False, why): plain values, so nothing but them crosses the pipe."""
    try:
        tokenizer = _tokenizer(folder)
    except (OSError, ValueError) as exc:
        return False, f"its tokenizer could not be read ({type(exc).__name__})."
    if "chat_template" not in template_kwargs and tokenizer.chat_template is None:
        return False, "the model has no chat template, so its prompt cannot be counted."
    try:
        ids = tokenizer.apply_chat_template(
            as_the_server_renders(messages),
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
            **template_kwargs,
        )
    except Exception as exc:  # the template's own refusal (raise_exception) or error
        return False, f"The model's chat template refused the conversation: {exc}"
    return True, len(ids)
