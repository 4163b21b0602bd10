"""Claude Code's billing block and mlx-lm's prompt cache: the whole app as `make run` serves it
(testing/stack.py) and a real `mlx_lm.server` on a random llama big enough that reading a long
prompt takes time (the tiny model's tokenizer; 4 layers of 256).

Claude Code begins its system prompt with `x-anthropic-billing-header: cc_version=…; cch=…;`, new
on every request, so a server that caches the longest common prompt prefix reuses nothing of the
long agent prompt after it. The gateway drops that block (gateway/anthropic_request.py). Each
sample is an agent's second request (the first one's conversation and one more turn) on a system
prompt of SYSTEM_WORDS tokens that no earlier request had, its time to the first content block
(one token asked for), in three interleaved variants:

- a varying billing block, as Claude Code sends it (the gateway drops it);
- no billing block (the baseline);
- a varying block the gateway does not know, so it reaches the model: every request before."""

from __future__ import annotations

import json
import random
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Result, summarize
from bench.gateway_run import GatewayRun
from testing.tinymodel import WORDS, make_tiny_model

ROUNDS = 5
SYSTEM_WORDS = 2000  # one token each
BIGGER = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 32768,
}
VARIANTS = ("dropped", "none", "kept")


def _long_context_model(folder: Path) -> Path:
    """The tiny model's tokenizer under a random llama that reads a long prompt in measurable time."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    make_tiny_model(folder)
    config = {**json.loads((folder / "config.json").read_text()), **BIGGER}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    return folder


def _system(variant: str, prompt: str) -> list[dict[str, Any]]:
    """The system blocks; the stamp's hex digits apart, so that the word-level tokenizer reads each
    (a hex word would be one unknown token, the same on every request)."""
    stamp = f"cc_version=2.1.328.{'.'.join(secrets.token_hex(2))}; cc_entrypoint=sdk-cli; cch={'.'.join(secrets.token_hex(3))};"
    blocks = {"dropped": [f"x-anthropic-billing-header: {stamp}"], "none": [], "kept": [f"x-billing: {stamp}"]}
    return [{"type": "text", "text": text} for text in [*blocks[variant], prompt]]


def _first_block_ms(client: httpx.Client, system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> float:
    """Milliseconds from sending a streamed Messages request to its first content block."""
    body = {"model": "tiny", "system": system, "messages": messages, "max_tokens": 1, "stream": True}
    began = time.perf_counter()
    elapsed = None
    with client.stream("POST", "/v1/messages", json=body) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if elapsed is None and line == "event: content_block_start":
                elapsed = (time.perf_counter() - began) * 1000
    if elapsed is None:
        raise RuntimeError("the stream held no content block")
    return elapsed


def _two_requests_ms(client: httpx.Client, variant: str, prompt: str) -> tuple[float, float]:
    """The first request (a prompt not seen before) and the second one's times to first block."""
    asked = [{"role": "user", "content": "hello model"}]
    first = _first_block_ms(client, _system(variant, prompt), asked)
    more = [*asked, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "yes"}]
    return first, _first_block_ms(client, _system(variant, prompt), more)


def run() -> list[Result]:
    words = random.Random(27)
    samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cold: list[float] = []
    with GatewayRun(make_model=_long_context_model) as gateway:
        client = httpx.Client(base_url=gateway.stack.url, headers={"x-api-key": gateway.secret}, timeout=300)
        _two_requests_ms(client, "none", "warm up")
        for _ in range(ROUNDS):
            for variant in VARIANTS:  # a system prompt no earlier request had, each time
                prompt = " ".join(words.choices(WORDS, k=SYSTEM_WORDS))
                first, second = _two_requests_ms(client, variant, prompt)
                cold.append(first)
                samples[variant].append(second)
    none = statistics.median(samples["none"])
    return [
        summarize(
            "billing block: 2nd request TTFT, varying block (dropped)", "ms", samples["dropped"],
            baseline="no billing block", baseline_samples=samples["none"],
            note=f"ratio of medians {statistics.median(samples['dropped']) / none:.2f}; {SYSTEM_WORDS}-token system prompt",
        ),
        summarize(
            "billing block: 2nd request TTFT, varying block kept (before)", "ms", samples["kept"],
            baseline="no billing block", baseline_samples=samples["none"],
            note=f"ratio of medians {statistics.median(samples['kept']) / none:.2f}: what the drop saves; "
            f"a first request (nothing cached): {statistics.median(cold):.0f} ms",
        ),
    ]  # fmt: skip
