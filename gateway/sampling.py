"""The generation options the gateway passes on to `mlx_lm.server`, checked first.

mlx-lm 0.32 checks some options' types in the request's thread, but reads others in its one
generation thread: a value it cannot use there (a `stop` that is not text, a `logit_bias` token
beyond the vocabulary, a `seed` out of range, a `top_k` larger than the vocabulary) kills that
thread, and the server answers "generation thread died", then 503, until it is restarted. The model
is shared, so any key holder could take it down again and again: such values are refused here with
the option named (or, for `top_k`, made harmless)."""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import GatewayError
from library.local import local_model_path, read_config

STOP_MAX = 16  # OpenAI takes 4; mlx-lm has no limit, and each one is a state machine to build
SEED_END = 2**64  # mx.random.seed takes an unsigned 64-bit number
DRAFT_TOKENS_MAX = 64  # speculative decoding drafts a few tokens a step; a huge count only uses memory


def vocabulary_size(model: str) -> int | None:
    folder = local_model_path(model)
    size = read_config(folder).get("vocab_size") if folder else None
    return size if isinstance(size, int) and size > 0 else None


def sampling_guard(upstream: dict[str, Any], model: str) -> None:
    """Refuse (400) what would kill the generation thread of `model`'s server; `top_k` beyond the
    vocabulary becomes 0, which is what it means there (every token kept)."""
    _check_stop(upstream.get("stop"))
    _check_whole(upstream, "seed", 0, SEED_END - 1)
    _check_whole(upstream, "num_draft_tokens", 0, DRAFT_TOKENS_MAX)
    if "logit_bias" in upstream or upstream.get("top_k") is not None:
        vocabulary = vocabulary_size(model)
        _check_logit_bias(upstream.get("logit_bias"), vocabulary)
        _limit_top_k(upstream, vocabulary)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_whole(upstream: dict[str, Any], name: str, low: int, high: int) -> None:
    value = upstream.get(name)
    if value is not None and not (_is_whole(value) and low <= value <= high):
        raise GatewayError(400, f"{name}: must be a whole number from {low} to {high}.")


def _check_stop(stop: Any) -> None:
    """A string or a list of strings, as OpenAI documents it."""
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > STOP_MAX:
        raise GatewayError(400, f"stop: must be a string or a list of at most {STOP_MAX} non-empty strings.")


def _check_logit_bias(bias: Any, vocabulary: int | None) -> None:
    """Token ids (as JSON keys, so strings) of this model's vocabulary, each to a finite number (OpenAI
    takes -100 to 100; mlx-lm adds any bias to the logits, so -1000 bans a token here as well)."""
    if bias is None:
        return
    if not isinstance(bias, dict):
        raise GatewayError(400, "logit_bias: must be an object of token ids to numbers.")
    if bias and vocabulary is None:
        raise GatewayError(400, "logit_bias: this model's vocabulary size is unknown (no vocab_size in its config).")
    size = vocabulary or 0
    for token, value in bias.items():
        if not (isinstance(token, str) and token.isascii() and token.isdigit() and int(token) < size):
            raise GatewayError(400, f"logit_bias: {token!r} is not a token id of this model (0 to {size - 1}).")
        if not (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)):
            raise GatewayError(400, f"logit_bias: the bias of token {token} must be a number.")


def _limit_top_k(upstream: dict[str, Any], vocabulary: int | None) -> None:
    """mlx-lm checks only `top_k >= 0`; a value beyond the vocabulary keeps every token anyway,
    which is what 0 (no top-k) means."""
    top_k = upstream.get("top_k")
    if top_k is None:
        return
    if not _is_whole(top_k) or top_k < 0:
        raise GatewayError(400, "top_k: must be a whole number, 0 or more.")
    if vocabulary is None or top_k >= vocabulary:
        upstream["top_k"] = 0
