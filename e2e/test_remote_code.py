"""The remote-code attempt, with real parts: a model repo on the hub stand-in whose config.json names
its own Python file (`model_file`), downloaded by the real supervisor with huggingface_hub, served by a
real mlx_lm.server. A member cannot turn on trust_remote_code, so the file never runs; an
administrator can, after the warning, and then it does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from library.models import Download, DownloadState
from profiles.models import ServerProfile
from servers.logs import server_log_path
from servers.models import Server
from servers.states import State
from testing.hubstub import repo_from_folder
from testing.net import free_port
from testing.supervisor import SupervisorProcesses, wait_for

pytestmark = pytest.mark.mlx

REPO = "someone/Tiny-Remote-Code"

EVIL = """
from pathlib import Path

Path({marker!r}).write_text("the repo's code ran")

from mlx_lm.models.llama import Model, ModelArgs  # noqa: E402,F401  (a working architecture)
"""


@pytest.fixture
def remote_code_repo(hub: Any, tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model plus `evil.py`, named by config.json's model_file; returns the marker path."""
    marker = tmp_path / "remote-code-ran"
    folder = tmp_path / "repo"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_file": "evil.py"}))
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    hub.add(repo_from_folder(REPO, folder))
    return marker


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def _form(**changes: str) -> dict[str, str]:
    return {
        "name": "remote",
        "model": REPO,
        "host": "127.0.0.1",
        "port": str(free_port()),
        "log_level": "INFO",
    } | changes


def test_remote_code_is_refused_to_a_member_and_runs_for_an_administrator_after_the_warning(
    supervisor_process: SupervisorProcesses, remote_code_repo: Path, make_user: Callable[..., User]
) -> None:
    marker = remote_code_repo
    member = _client(make_user("member@example.com"))
    admin = _client(make_user("boss@example.com", admin=True))
    supervisor_process.start()

    # The member downloads the repo (the supervisor runs the download).
    assert member.post("/models/download/", {"repo_id": REPO}).status_code == 302
    wait_for(
        lambda: Download.objects.filter(repo_id=REPO, state=DownloadState.COMPLETED).exists(),
        timeout=60,
        what="the download to complete",
    )

    # Posting trust_remote_code anyway: a form error, no profile.
    refused = member.post("/profiles/new/", _form(trust_remote_code="on"))
    assert refused.status_code == 200 and "trust remote code" in str(refused.context["form"].errors)
    assert not ServerProfile.objects.exists()
    # The form did not offer it; it says who can.
    assert 'name="trust_remote_code"' not in member.get("/profiles/new/").content.decode()

    # A profile without it, then an edit that adds it: refused too.
    assert member.post("/profiles/new/", _form()).status_code == 302
    profile = ServerProfile.objects.get()
    data = _form(port=str(profile.port), trust_remote_code="on")
    edit = member.post(f"/profiles/{profile.pk}/edit/", data)
    assert edit.status_code == 200 and edit.context["form"].errors
    profile.refresh_from_db()
    assert not profile.trust_remote_code

    # Started as it is, mlx_lm refuses to import the repo's file: the server fails, the file never ran.
    assert member.post(f"/servers/{profile.pk}/start/").status_code == 302
    wait_for(
        lambda: Server.objects.get(profile=profile).state in (State.BACKOFF, State.FATAL),
        timeout=120,
        what="the start without trust_remote_code to fail",
    )
    assert not marker.exists(), "the repo's code ran for a member"
    assert "trust_remote_code" in server_log_path(profile.pk).read_text(errors="replace"), "refused by mlx_lm"
    admin.post(f"/servers/{profile.pk}/stop/")
    wait_for(lambda: Server.objects.get(profile=profile).state == State.STOPPED, timeout=60, what="the stop")

    # The administrator turns it on: warned on the form and after saving; then it runs.
    assert "runs the Python files of the model's repo" in admin.get(f"/profiles/{profile.pk}/edit/").content.decode()
    saved = admin.post(f"/profiles/{profile.pk}/edit/", data, follow=True)
    assert "Trust remote code is on" in saved.content.decode()
    profile.refresh_from_db()
    assert profile.trust_remote_code
    assert admin.post(f"/servers/{profile.pk}/start/").status_code == 302
    wait_for(
        lambda: Server.objects.get(profile=profile).state == State.RUNNING,
        timeout=150,
        what="the administrator's server to run",
    )
    supervisor_process.remember_servers()
    # The quick chat makes sure the model is loaded (mlx_lm.server may load it at the first request).
    chat = admin.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers={"HX-Request": "true"})
    log = server_log_path(profile.pk).read_text(errors="replace")
    assert marker.exists(), f"{chat.content.decode()[:500]}\n{log[-3000:]}"
    assert marker.read_text() == "the repo's code ran"
