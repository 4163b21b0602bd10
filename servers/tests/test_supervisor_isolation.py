"""What a model server inherits from the manager, and which address the supervisor probes."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from profiles.models import ServerProfile
from servers.addresses import listen_address
from servers.models import Server
from servers.supervisor.checks import check_model_present
from servers.supervisor.host import RealHost

PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def test_model_servers_get_none_of_the_managers_secrets_and_stay_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "the-managers-own-key")
    monkeypatch.setenv("DATABASE_URL", "postgres://mlx:secret@127.0.0.1/mlx")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    log = tmp_path / "env.log"
    process = RealHost().spawn([sys.executable, "-c", PRINT_ENV], log_path=log)
    deadline = time.monotonic() + 30
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    env = json.loads(log.read_text().strip().splitlines()[-1])
    assert "SECRET_KEY" not in env and "DATABASE_URL" not in env and "HF_TOKEN" not in env
    assert env["HF_HUB_OFFLINE"] == "1", "a server must never download a model by itself"
    assert env["HF_HOME"] == str(tmp_path / "hf"), "it still finds the models in the cache"
    assert env["MLXM_DATA_DIR"] == os.environ["MLXM_DATA_DIR"], "which manager started it stays visible"


def test_a_missing_draft_model_is_refused_before_spawning(
    make_profile: Callable[..., ServerProfile], tiny_model: Path
) -> None:
    profile = make_profile(model=str(tiny_model))
    assert check_model_present(profile) is None
    profile.draft_model = "mlx-community/Not-Downloaded-Draft-4bit"
    assert check_model_present(profile) == (
        "The draft model mlx-community/Not-Downloaded-Draft-4bit is not on this machine. "
        "Download it from the Models page first; servers never download models by themselves."
    )


def test_probes_go_where_the_process_listens_even_after_the_profile_is_edited(
    make_profile: Callable[..., ServerProfile],
) -> None:
    profile = make_profile(port=20001)
    server = Server.objects.create(
        profile=profile,
        port=20001,
        cmdline=[sys.executable, "-m", "mlx_lm", "server", "--host", "::1", "--port", "20001"],
    )
    profile.host, profile.port = "0.0.0.0", 20999  # edited while running: applies at the next start
    profile.save()
    server.refresh_from_db()
    assert listen_address(server) == ("::1", 20001)
