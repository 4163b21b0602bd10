"""The mlx_vlm engine's argv, checked against the pinned mlx-vlm's own argument parser: a flag
renamed or a default changed by an upgrade fails here."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest

from nodes.models import Node
from profiles.argv import VLM_GENERATION_ONLY, VLM_OPTIONS, build_server_argv
from profiles.models import Engine, Kind, ServerProfile
from profiles.tests.conftest import parser_of

PREFIX = [sys.executable, "-m", "mlx_vlm.server"]
MODEL = "mlx-community/Qwen2.5-VL-3B-Instruct-4bit"

# field, a non-default value, the parser's destination, the value the server must receive
CASES: list[tuple[str, Any, str, Any]] = [
    ("trust_remote_code", True, "trust_remote_code", True),
    ("log_level", "DEBUG", "log_level", "DEBUG"),
    ("max_tokens", 4096, "max_tokens", 4096),
    ("prefill_step_size", 512, "prefill_step_size", 512),
    ("kv_bits", 4, "kv_bits", 4.0),
    ("kv_group_size", 32, "kv_group_size", 32),
    ("quantized_kv_start", 1000, "quantized_kv_start", 1000),
    ("max_num_seqs", 8, "max_num_seqs", 8),
    ("vision_cache_size", 5, "vision_cache_size", 5),
]


@pytest.fixture(scope="module")
def vlm_parser() -> argparse.ArgumentParser:
    """mlx_vlm.server's real parser."""
    from mlx_vlm.server import cli

    return parser_of(cli.main)


def profile(**fields: Any) -> ServerProfile:
    base: dict[str, Any] = {"name": "p", "model": MODEL, "host": "127.0.0.1", "port": 8123}
    base |= {"engine": Engine.MLX_VLM, "kind": Kind.VISION}
    return ServerProfile(**{**base, "node": Node(name="here"), **fields})


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    assert argv[:3] == PREFIX
    return parser.parse_args(argv[3:])


@pytest.mark.parametrize(
    ("kind", "dest"),
    [
        (Kind.CHAT, "model"),
        (Kind.VISION, "model"),
        (Kind.EMBEDDINGS, "embedding_model"),
        (Kind.RERANK, "reranker_model"),
    ],
)
def test_each_kind_loads_its_model_with_its_flag(vlm_parser: argparse.ArgumentParser, kind: str, dest: str) -> None:
    argv = build_server_argv(profile(kind=kind))
    assert len(argv) == 9, argv
    parsed = vars(parse(vlm_parser, argv))
    defaults = vars(vlm_parser.parse_args([]))
    changed = {key for key in parsed if parsed[key] != defaults[key]}
    assert changed == {dest, "host", "port"}
    assert (parsed[dest], parsed["host"], parsed["port"]) == (MODEL, "127.0.0.1", 8123)


@pytest.mark.parametrize(("field", "value", "dest", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_option_reaches_the_server(
    vlm_parser: argparse.ArgumentParser, field: str, value: Any, dest: str, expected: Any
) -> None:
    argv = build_server_argv(profile(**{field: value}))
    parsed = vars(parse(vlm_parser, argv))
    defaults = vars(vlm_parser.parse_args(["--model", MODEL, "--host", "127.0.0.1", "--port", "8123"]))
    assert {key for key in parsed if parsed[key] != defaults[key]} == {dest}
    assert parsed[dest] == expected


@pytest.mark.parametrize("field", [c[0] for c in CASES if c[0] != "trust_remote_code"])
def test_the_servers_default_is_left_out(vlm_parser: argparse.ArgumentParser, field: str) -> None:
    dest = next(c[2] for c in CASES if c[0] == field)
    default = vlm_parser.parse_args([]).__dict__[dest]
    if default is None:
        return  # no default to repeat: any value set is passed
    value = default if isinstance(default, str) else int(default)
    assert build_server_argv(profile(**{field: value})) == build_server_argv(profile())


def test_options_cover_what_the_profile_exposes() -> None:
    assert {option.field for option in VLM_OPTIONS} == {c[0] for c in CASES}


def test_an_embedding_model_gets_no_generation_options(vlm_parser: argparse.ArgumentParser) -> None:
    """No KV cache, no answer length, no adapter: the generation options are not passed."""
    fields = {c[0]: c[1] for c in CASES if c[0] in VLM_GENERATION_ONLY}
    argv = build_server_argv(profile(kind=Kind.EMBEDDINGS, adapter_path="/opt/adapter", **fields))
    assert argv == build_server_argv(profile(kind=Kind.EMBEDDINGS))


def test_the_adapter_goes_with_the_chat_model(vlm_parser: argparse.ArgumentParser) -> None:
    parsed = parse(vlm_parser, build_server_argv(profile(adapter_path="/opt/adapters/run 1")))
    assert parsed.adapter_path == "/opt/adapters/run 1" and parsed.model == MODEL


def test_the_prefix_starts_mlx_vlm_server() -> None:
    result = subprocess.run([*PREFIX, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MLX VLM Http Server." in result.stdout and "--embedding-model" in result.stdout
