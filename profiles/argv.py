"""A profile turned into the argv of its model server (`mlx_lm.server`, or `mlx_vlm.server` for
the mlx_vlm engine), and the same as a shell line.

The supervisor runs the list as is (never through a shell). Only options that are set and differ
from `mlx_lm.server`'s own defaults are passed, so the command stays short and readable and a
profile keeps following the server's defaults where the user left them alone.
The defaults below are those of the pinned mlx-lm and mlx-vlm; `profiles/tests/test_argv.py` and
`test_vlm_argv.py` check them against each server's own argument parser, so an upgrade that
changes one fails a test.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from profiles.models import Engine, Kind, ServerProfile

OptionKind = Literal["value", "flag", "json", "origins"]


@dataclass(frozen=True)
class Option:
    field: str  # ServerProfile field
    flag: str  # mlx_lm.server's flag
    default: Any  # the server's default (None: the server has none, any set value is passed)
    kind: OptionKind = "value"


OPTIONS: tuple[Option, ...] = (
    Option("adapter_path", "--adapter-path", None),
    Option("allowed_origins", "--allowed-origins", ["*"], "origins"),
    Option("draft_model", "--draft-model", None),
    Option("num_draft_tokens", "--num-draft-tokens", 3),
    Option("trust_remote_code", "--trust-remote-code", False, "flag"),
    Option("log_level", "--log-level", "INFO"),
    Option("chat_template", "--chat-template", ""),
    Option("use_default_chat_template", "--use-default-chat-template", False, "flag"),
    Option("temperature", "--temp", 0.0),
    Option("top_p", "--top-p", 1.0),
    Option("top_k", "--top-k", 0),
    Option("min_p", "--min-p", 0.0),
    Option("max_tokens", "--max-tokens", 512),
    Option("chat_template_args", "--chat-template-args", {}, "json"),
    Option("decode_concurrency", "--decode-concurrency", 32),
    Option("prompt_concurrency", "--prompt-concurrency", 8),
    Option("prefill_step_size", "--prefill-step-size", 2048),
    Option("prompt_cache_size", "--prompt-cache-size", 10),
    Option("prompt_cache_bytes", "--prompt-cache-bytes", None),
    Option("kv_bits", "--kv-bits", None),
    Option("kv_group_size", "--kv-group-size", 64),
    Option("quantized_kv_start", "--quantized-kv-start", 5000),
)


# mlx_vlm.server's options a profile sets (the same fields as mlx-lm's where the flag means the same).
VLM_OPTIONS: tuple[Option, ...] = (
    Option("trust_remote_code", "--trust-remote-code", False, "flag"),
    Option("log_level", "--log-level", "INFO"),
    Option("max_tokens", "--max-tokens", 2048),
    Option("prefill_step_size", "--prefill-step-size", 2048),
    Option("kv_bits", "--kv-bits", None),
    Option("kv_group_size", "--kv-group-size", 64),
    Option("quantized_kv_start", "--quantized-kv-start", 5000),
    Option("max_num_seqs", "--max-num-seqs", None),
    Option("vision_cache_size", "--vision-cache-size", 20),
)
# Which of mlx_vlm.server's model flags loads the profile's model, by kind.
VLM_MODEL_FLAG = {
    Kind.CHAT: "--model",
    Kind.VISION: "--model",
    Kind.EMBEDDINGS: "--embedding-model",
    Kind.RERANK: "--reranker-model",
}
# Options that only the generating kinds use (an embedding model has no KV cache, no adapter).
VLM_GENERATION_ONLY = {"max_tokens", "kv_bits", "kv_group_size", "quantized_kv_start", "max_num_seqs"}


def engine_options(profile: ServerProfile) -> tuple[Option, ...]:
    """The options `profile`'s engine (and kind) reads."""
    if profile.engine != Engine.MLX_VLM:
        return OPTIONS
    if profile.kind in (Kind.CHAT, Kind.VISION):
        return VLM_OPTIONS
    return tuple(option for option in VLM_OPTIONS if option.field not in VLM_GENERATION_ONLY)


def split_origins(text: str) -> list[str]:
    """The allowed origins as a list: comma-separated, blanks dropped; empty means the default."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _option_args(option: Option, value: Any) -> list[str]:
    """The argv items for one option, or [] when it is unset or equal to the server's default."""
    if option.kind == "flag":
        return [option.flag] if value else []
    if option.kind == "origins":
        origins = split_origins(value or "")
        return [option.flag, ",".join(origins)] if origins and origins != option.default else []
    if value is None or value == "" or value == option.default:
        return []
    if option.kind == "json":
        return [option.flag, json.dumps(value, ensure_ascii=False, separators=(",", ":"))]
    return [option.flag, str(value)]


def build_server_argv(profile: ServerProfile) -> list[str]:
    """The command that serves `profile`: this interpreter, `-m mlx_lm server` (or
    `-m mlx_vlm.server` with the flag that loads its kind of model), and its options."""
    if profile.engine == Engine.MLX_VLM:
        argv = [sys.executable, "-m", "mlx_vlm.server", VLM_MODEL_FLAG[Kind(profile.kind)], profile.model]
        if profile.adapter_path and profile.kind in (Kind.CHAT, Kind.VISION):
            argv += ["--adapter-path", profile.adapter_path]
    else:
        argv = [sys.executable, "-m", "mlx_lm", "server", "--model", profile.model]
    argv += ["--host", profile.host, "--port", str(profile.port)]
    for option in engine_options(profile):
        argv += _option_args(option, getattr(profile, option.field))
    return argv


def one_line(argv: Sequence[str]) -> str:
    """The argv as a shell would read it, on one line: a newline or carriage return in any field
    shows as \\n or \\r, so no profile field can forge a log line."""
    return shlex.join(argv).replace("\r", "\\r").replace("\n", "\\n")


def command_line(profile: ServerProfile) -> str:
    """The same command as one shell-quoted line, for people to read and copy."""
    return shlex.join(build_server_argv(profile))
