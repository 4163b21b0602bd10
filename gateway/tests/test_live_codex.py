"""Codex CLI (`@openai/codex` from npm, the real binary) through `/v1/responses`: a scripted model
asks Codex's own shell tool (`exec_command`) to write a file, Codex runs it, sends the output back
as a `function_call_output`, and prints the model's final answer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from gateway.models import GatewayApi, UsageRecord
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from testing.agents import agent_cli
from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall
from testing.supervisor import wait_for
from testing.web import WebServer

pytestmark = pytest.mark.mlx

HANG_GUARD = 300  # seconds: only against a hang; the run takes a few seconds


def codex_argv(codex: Path, base_url: str, model: str) -> list[str]:
    """`codex exec` with the provider set as docs/gateway.md shows; no sandbox (this container
    cannot make Codex's), so the command runs in the working folder."""
    provider = {
        "name": '"MLX Manager"',
        "base_url": f'"{base_url}"',
        "env_key": '"MLXM_API_KEY"',
        "wire_api": '"responses"',
    }
    settings = [f"model_providers.mlxm.{key}={value}" for key, value in provider.items()]
    return [
        str(codex),
        "exec",
        *(arg for setting in settings for arg in ("-c", setting)),
        "-c",
        "model_provider=mlxm",
        "-m",
        model,
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "Write done to out.txt",
    ]


def test_codex_writes_a_file_through_the_gateway(
    supervisor_process: Any, scripted_model: Callable[..., Path], tmp_path: Path, make_user: Callable[..., User]
) -> None:
    codex = agent_cli("codex")
    supervisor_process.start()
    start_profile(scripted_model(ToolCall("exec_command", {"cmd": "echo done > out.txt"})), "coder", supervisor_process)
    secret = key_create(user=make_user("coder@example.com"), name="codex").secret
    work, home = tmp_path / "work", tmp_path / "codex-home"
    work.mkdir()
    home.mkdir()
    web = WebServer(tmp_path / "gunicorn.log").start()
    try:
        env = {**os.environ, "CODEX_HOME": str(home), "MLXM_API_KEY": secret, "NO_COLOR": "1"}
        run = subprocess.run(
            codex_argv(codex, web.url + "/v1", "coder"),
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        records = UsageRecord.objects.filter(api=GatewayApi.RESPONSES)
        if run.returncode == 0 and (work / "out.txt").exists():  # else the assertions below say what failed
            wait_for(lambda: records.count() >= 2, what="the usage records of both requests")
    finally:
        web.stop()
    said = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, said
    assert (work / "out.txt").read_text() == "done\n", said
    assert run.stdout.strip().splitlines()[-1] == DEFAULT_ANSWER, said
    # the call, then the answer after the command's output: two streamed requests, both served
    assert [(r.stream, r.status) for r in records] == [(True, 200), (True, 200)], said
