"""A tiny MLX model whose answers are scripted, yet come from the real `mlx_lm.server`.

Every layer's output projection is zero, so the residual stream is just the token's embedding; the
embeddings are one-hot (hidden size = vocabulary size) and `lm_head` makes each token's logits peak
at the token that should follow it. Greedy decoding then follows a fixed chain, and the chat
template picks where the chain starts:

- tools offered and no tool result yet in the conversation: the chain spells
  `<tool_call>`, one token holding the call's JSON, `</tool_call>`, end. The template names
  `<tool_call>` and `tool_call.name`, so mlx-lm parses it with its json tool parser and answers
  real OpenAI `tool_calls` (one call per conversation, then the answer);
- otherwise: the answer's words, one token each, then end.

`make_scripted_model(folder, call=ToolCall("Bash", {"command": "echo done > out.txt"}))`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TOOL = "STARTTOOL"
START_TEXT = "STARTTEXT"
SPECIALS = ["<unk>", "<s>", "</s>"]
EOS = 2
TEMPLATE = (
    "{%- set ns = namespace(tool_result=false) -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'tool' %}{% set ns.tool_result = true %}{% endif -%}"
    "{{ m['role'] }}: {{ m['content'] if m['content'] is string else '' }}\n"
    "{%- for call in (m['tool_calls'] or []) %}{% set tool_call = call['function'] or call -%}"
    "<tool_call>{{ tool_call.name }}</tool_call>\n"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}assistant: "
    "{%- if CALLS and not ns.tool_result %} " + START_TOOL + "{% else %} " + START_TEXT + "{% endif -%}"
    "{%- endif -%}"
)
DEFAULT_ANSWER = "The file is written."


def chat_template(*, unprompted: bool) -> str:
    """The template; `unprompted`: the model calls its tool even when the request offers none
    (as real models sometimes do)."""
    return TEMPLATE.replace("CALLS", "true" if unprompted else "tools")


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps({"name": self.name, "arguments": self.arguments})


def _chains(call: ToolCall | None, answer: str) -> tuple[list[str], list[list[str]]]:
    """The vocabulary (padded so the hidden size splits into two even heads) and the chains."""
    words = answer.split()
    if len(set(words)) != len(words):
        raise ValueError("the answer's words must differ: each token has one successor")
    chains = [[START_TEXT, *words]]
    if call is not None:
        chains.append([START_TOOL, "<tool_call>", call.json(), "</tool_call>"])
    vocab = SPECIALS + [token for chain in chains for token in chain]
    while len(vocab) % 4:
        vocab.append(f"<pad{len(vocab)}>")
    return vocab, chains


def _save_tokenizer(target: Path, vocab: list[str], template: str) -> None:
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(vocab={tok: i for i, tok in enumerate(vocab)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_tokens([AddedToken(tok, normalized=False) for tok in ("<tool_call>", "</tool_call>")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = template
    fast.save_pretrained(str(target))


def _config(size: int) -> dict[str, Any]:
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": size,
        "num_hidden_layers": 1,
        "intermediate_size": 8,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": size,
        "max_position_embeddings": 131072,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": EOS,
    }


def make_scripted_model(
    target: Path, *, call: ToolCall | None = None, answer: str = DEFAULT_ANSWER, unprompted: bool = False
) -> Path:
    """Write a model into `target` that calls `call` when tools are offered (or always, where
    `unprompted`) until a tool result comes, and says `answer` otherwise."""
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    vocab, chains = _chains(call, answer)
    target.mkdir(parents=True, exist_ok=True)
    _save_tokenizer(target, vocab, chat_template(unprompted=unprompted))
    config = _config(len(vocab))
    (target / "config.json").write_text(json.dumps(config, indent=2))

    index = {tok: i for i, tok in enumerate(vocab)}
    head = np.zeros((len(vocab), len(vocab)), dtype=np.float32)  # head[next, current]
    head[EOS, :] = 1.0  # a token without a successor ends the answer
    for chain in chains:
        for current, following in zip(chain, [*chain[1:], "</s>"], strict=True):
            head[index[following], index[current]] = 10.0
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    for name in list(weights):
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])
    weights["model.embed_tokens.weight"] = mx.eye(len(vocab))
    weights["lm_head.weight"] = mx.array(head)
    mx.save_safetensors(str(target / "model.safetensors"), weights, metadata={"format": "mlx"})
    return target


if __name__ == "__main__":
    import sys

    print(make_scripted_model(Path(sys.argv[1]), call=ToolCall("Bash", {"command": "echo done > out.txt"})))
