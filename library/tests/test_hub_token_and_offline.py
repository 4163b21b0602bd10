"""What the README promises about Hugging Face settings: `HF_TOKEN` is sent to the Hub (a gated
repo answers 401 without it), and `HF_HUB_OFFLINE=1` keeps every page off the network."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from library.downloads import DownloadRunner
from library.local import cached_repo_ids
from library.models import DownloadState
from library.services import download_queue
from library.tests.test_downloads import drive
from testing.hubstub import repo_from_folder
from testing.supervisor import supervisor_env

GATED = "mlx-community/Gated-Tiny-4bit"
TOKEN = "hf_test_token_for_the_stand_in"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gated(hub: Any, tiny_model: Path) -> Iterator[Any]:
    repo = hub.add(repo_from_folder(GATED, tiny_model, token=TOKEN))
    yield repo
    with hub.lock:
        hub.repos.pop(GATED, None)


@pytest.mark.django_db(transaction=True)
def test_hf_token_is_sent_for_a_gated_repo(
    user_client: Any, gated: Any, hub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    page = user_client.get(f"/models/hub/{GATED}/").content.decode()
    assert "No such model on the Hub (or it is private and no token is set)." in page
    assert "config.json" not in page
    assert set(hub.authorizations) == {None}, "no token was set, none was sent"

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    page = user_client.get(f"/models/hub/{GATED}/").content.decode()
    assert "hub-error" not in page and "config.json" in page
    download = download_queue(repo_id=GATED, by=None)
    runner = DownloadRunner()
    try:
        final = drive(runner, download.pk, lambda row: row.state in (DownloadState.COMPLETED, DownloadState.FAILED))[-1]
    finally:
        runner.shutdown()
    assert final.state == DownloadState.COMPLETED, final.error
    assert GATED in cached_repo_ids()
    assert f"Bearer {TOKEN}" in hub.authorizations


OFFLINE_PAGES = """
import json
from django.test import Client
from accounts.models import User
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(email={email!r}), backend="accounts.backends.EmailBackend")
pages = {{url: client.get(url) for url in ("/models/search/?q=tiny", "/models/hub/{repo}/", "/models/")}}
print(json.dumps({{url: [r.status_code, r.content.decode()] for url, r in pages.items()}}))
"""


@pytest.mark.django_db(transaction=True)
def test_hf_hub_offline_keeps_every_page_off_the_network(approved_user: User, hub: Any) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE when it is imported: the app runs in a process of its
    own with it set, as a person would start it."""
    env = {**supervisor_env(), "HF_HUB_OFFLINE": "1"}
    code = OFFLINE_PAGES.format(email=approved_user.email, repo="mlx-community/Tiny-Llama-4bit")
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    pages = json.loads(out.stdout.strip().splitlines()[-1])
    assert hub.requests == [], "offline, nothing may reach the Hub"
    for url in ("/models/search/?q=tiny", "/models/hub/mlx-community/Tiny-Llama-4bit/"):
        status, html = pages[url]
        assert status == 200, url
        assert "HF_HUB_OFFLINE is set: the Hub is not asked. Your local models still work" in html
    status, html = pages["/models/"]
    assert status == 200 and "hub-error" not in html
