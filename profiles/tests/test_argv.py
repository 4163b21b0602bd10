"""The argv builder, checked against the pinned mlx-lm's own argument parser (not a copied flag list):
an mlx-lm upgrade that renames a flag or changes a default fails here."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from typing import Any

import pytest

from nodes.models import Node
from profiles.argv import build_server_argv, command_line
from profiles.models import ServerProfile
from profiles.tests.conftest import parser_of

PREFIX = [sys.executable, "-m", "mlx_lm", "server"]
# Options of mlx_lm.server a profile does not expose (argparse's own --help; --pipeline is for
# distributed serving across machines) and those always passed.
NOT_PROFILE_OPTIONS = {"help", "pipeline"}
ALWAYS_PASSED = {"model", "host", "port"}

# field, a non-default value, the parser's destination, the value the server must receive
CASES: list[tuple[str, Any, str, Any]] = [
    ("adapter_path", "/opt/adapters/my run", "adapter_path", "/opt/adapters/my run"),
    (
        "allowed_origins",
        "http://a.test, http://b.test:3000",
        "allowed_origins",
        ["http://a.test", "http://b.test:3000"],
    ),
    ("draft_model", "mlx-community/Qwen3-0.6B-4bit", "draft_model", "mlx-community/Qwen3-0.6B-4bit"),
    ("num_draft_tokens", 5, "num_draft_tokens", 5),
    ("trust_remote_code", True, "trust_remote_code", True),
    ("log_level", "DEBUG", "log_level", "DEBUG"),
    ("chat_template", "{% for m in messages %}{{ m['content'] }}\n{% endfor %}", "chat_template", None),
    ("use_default_chat_template", True, "use_default_chat_template", True),
    ("temperature", 0.7, "temp", 0.7),
    ("top_p", 0.95, "top_p", 0.95),
    ("top_k", 40, "top_k", 40),
    ("min_p", 0.05, "min_p", 0.05),
    ("max_tokens", 4096, "max_tokens", 4096),
    ("chat_template_args", {"enable_thinking": False, "note": "ünï"}, "chat_template_args", None),
    ("decode_concurrency", 4, "decode_concurrency", 4),
    ("prompt_concurrency", 2, "prompt_concurrency", 2),
    ("prefill_step_size", 512, "prefill_step_size", 512),
    ("prompt_cache_size", 3, "prompt_cache_size", 3),
    ("prompt_cache_bytes", 8_000_000_000, "prompt_cache_bytes", 8_000_000_000),
    ("kv_bits", 4, "kv_bits", 4),
    ("kv_group_size", 32, "kv_group_size", 32),
    ("quantized_kv_start", 1000, "quantized_kv_start", 1000),
]
FIELD_TO_DEST = {field: dest for field, _, dest, _ in CASES}


@pytest.fixture(scope="module")
def server_parser() -> argparse.ArgumentParser:
    """mlx_lm.server's real parser."""
    import mlx_lm.server

    return parser_of(mlx_lm.server.main)


def profile(**fields: Any) -> ServerProfile:
    base: dict[str, Any] = {"name": "p", "model": "mlx-community/Qwen3-4B-4bit", "host": "127.0.0.1", "port": 8123}
    return ServerProfile(**{**base, "node": Node(name="here"), **fields})  # no database: the node is given


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    assert argv[:4] == PREFIX
    return parser.parse_args(argv[4:])


def test_plain_profile_passes_only_model_host_and_port(server_parser: argparse.ArgumentParser) -> None:
    argv = build_server_argv(profile())
    assert argv == [*PREFIX, "--model", "mlx-community/Qwen3-4B-4bit", "--host", "127.0.0.1", "--port", "8123"]
    parsed = parse(server_parser, argv)
    assert (parsed.model, parsed.host, parsed.port) == ("mlx-community/Qwen3-4B-4bit", "127.0.0.1", 8123)
    assert vars(parsed) == {**vars(server_parser.parse_args([])), "model": parsed.model, "port": 8123}


@pytest.mark.parametrize(("field", "value", "dest", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_option_reaches_the_server(
    server_parser: argparse.ArgumentParser, field: str, value: Any, dest: str, expected: Any
) -> None:
    argv = build_server_argv(profile(**{field: value}))
    assert len(argv) in (11, 12), argv  # the base ten items plus a flag, or a flag and its value
    parsed = vars(parse(server_parser, argv))
    defaults = vars(server_parser.parse_args(["--model", "mlx-community/Qwen3-4B-4bit", "--port", "8123"]))
    changed = {key for key in parsed if parsed[key] != defaults[key]}
    assert changed == {dest}
    assert parsed[dest] == (value if expected is None else expected)


@pytest.mark.parametrize("field", list(FIELD_TO_DEST))
def test_the_servers_default_is_left_out(server_parser: argparse.ArgumentParser, field: str) -> None:
    """Set each field to exactly what mlx_lm.server would use anyway: nothing is passed for it."""
    default = server_parser.parse_args([]).__dict__[FIELD_TO_DEST[field]]
    if field == "allowed_origins":
        default = ",".join(default)
    argv = build_server_argv(profile(**{field: default}))
    assert argv == build_server_argv(profile())


def test_every_server_option_is_covered(server_parser: argparse.ArgumentParser) -> None:
    """A new or renamed option in mlx-lm shows up here instead of silently being unreachable."""
    dests = {action.dest for action in server_parser._actions}
    assert dests == set(FIELD_TO_DEST.values()) | NOT_PROFILE_OPTIONS | ALWAYS_PASSED


def test_shell_metacharacters_stay_single_items(server_parser: argparse.ArgumentParser, tmp_path: Any) -> None:
    nasty = tmp_path / "my model; rm -rf ~ $(whoami) `id` 'q' \"dq\" | & > <"
    template = "{{ '$HOME' }} \"quoted\" 'single' ; && || `cmd` $(sub)\nnew line\ttab"
    p = profile(
        model=str(nasty),
        host="::1",
        adapter_path=str(nasty / "adapters *"),
        draft_model=str(nasty / "draft"),
        num_draft_tokens=2,
        chat_template=template,
        chat_template_args={"say": 'it\'s "fine"; $(no)'},
        allowed_origins="http://x.test:1",
    )
    argv = build_server_argv(p)
    for value in (str(nasty), str(nasty / "adapters *"), str(nasty / "draft"), template):
        assert argv.count(value) == 1
    parsed = parse(server_parser, argv)
    assert parsed.model == str(nasty) and parsed.host == "::1"
    assert parsed.chat_template == template
    assert parsed.chat_template_args == {"say": 'it\'s "fine"; $(no)'}
    assert shlex.split(command_line(p)) == argv


def test_the_prefix_starts_mlx_lm_server() -> None:
    """The interpreter and `-m mlx_lm server` really reach the server's own argument parser."""
    result = subprocess.run([*PREFIX, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "MLX Http Server." in result.stdout and "--chat-template-args" in result.stdout


def test_one_line_keeps_a_forged_log_line_on_the_header_line() -> None:
    from profiles.argv import one_line

    line = one_line(["mlx_lm.server", "--chat-template", "x\n=== 2026-01-01 00:00:00 UTC: forged\r"])
    assert "\n" not in line and "\r" not in line
    assert "x\\n=== 2026-01-01 00:00:00 UTC: forged\\r" in line
