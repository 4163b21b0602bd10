"""A Hub nobody answers for (nothing listening on HF_ENDPOINT): the search page says so at once,
with the cause and the fix, and the real huggingface_hub client leaves no retries behind."""

from __future__ import annotations

import logging
from typing import Any

import huggingface_hub.constants as hf_constants
import pytest
from django.test import Client

from testing.net import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def nobody_listening(monkeypatch: pytest.MonkeyPatch, settings: Any) -> str:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    settings.MLXM_HUB_TIMEOUT = 60.0  # the answer must come from the failure, not from this deadline
    return endpoint


def test_search_with_nothing_listening_answers_at_once_with_cause_and_fix(
    user_client: Client, nobody_listening: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="huggingface_hub")
    html = user_client.get("/models/search/", {"q": "qwen"}).content.decode()
    # The refusal's own message, not the deadline's: the answer came from the failure, not a wait.
    assert "connection refused" in html and "did not answer in time" not in html
    assert nobody_listening in html
    for fix in ("HF_ENDPOINT", "HF_HUB_OFFLINE=1", "Models → Model folders"):
        assert fix in html
    # huggingface_hub logs every failed attempt before it sleeps and retries: none may appear.
    assert not [r.getMessage() for r in caplog.records if "thrown while requesting" in r.getMessage()]


def test_a_download_outside_a_page_keeps_the_clients_own_behaviour(nobody_listening: str) -> None:
    """No deadline set (the supervisor's downloads): the transport lets the client's errors through."""
    import httpx2
    from huggingface_hub import get_session

    with pytest.raises(httpx2.ConnectError):
        get_session().get(f"{nobody_listening}/api/models")
