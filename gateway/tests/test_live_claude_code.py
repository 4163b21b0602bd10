"""Claude Code itself (`@anthropic-ai/claude-code` from npm, installed by `make agents`) through
`/v1/` on a scripted model: the model asks Claude Code's shell tool to write a file, Claude Code
runs it, sends the result back, and prints the model's answer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from gateway.models import UsageRecord
from gateway.services import key_create
from gateway.tests.conftest import start_profile
from testing.agents import agent_cli
from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall
from testing.web import WebServer

pytestmark = pytest.mark.mlx

CALL = ToolCall("Bash", {"command": "echo done > out.txt", "description": "Write out.txt"})
HANG_GUARD = 300  # seconds: only against a hang; the task takes a few seconds


def claude_env(home: Path, base_url: str, key: str, model: str) -> dict[str, str]:
    """Claude Code pointed at the manager (docs/gateway.md, "Clients"), with no traffic of its own
    (telemetry, error reports, updates) and every model it picks mapped to the one profile."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def test_claude_code_runs_the_models_shell_command(
    supervisor_process: Any, scripted_model: Callable[..., Path], tmp_path: Path, make_user: Callable[..., User]
) -> None:
    claude = agent_cli("claude")
    supervisor_process.start()
    start_profile(scripted_model(CALL), "agent", supervisor_process)
    user = make_user("member@example.com")
    secret = key_create(user=user, name="claude").secret
    web = WebServer(tmp_path / "gunicorn.log").start()
    work, home = tmp_path / "work", tmp_path / "home"
    for folder in (work, home):
        folder.mkdir()
    try:
        done = subprocess.run(
            # --allowedTools, not --dangerously-skip-permissions: Claude Code refuses that as root (CI)
            [str(claude), "-p", "Write done into out.txt.", "--model", "agent", "--allowedTools", "Bash"],
            cwd=work,
            env=claude_env(home, web.url, secret, "agent"),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        said = f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
        assert done.returncode == 0, said + "\ngunicorn:\n" + web.output()[-3000:]
        assert (work / "out.txt").read_text() == "done\n", said
        assert DEFAULT_ANSWER in done.stdout, said
    finally:
        web.stop()
    # Claude Code's requests (the call, then the answer after its result) streamed, under the key
    records = UsageRecord.objects.filter(user=user, api_key__name="claude", status=200, stream=True)
    assert records.count() >= 2
