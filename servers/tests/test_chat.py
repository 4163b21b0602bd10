"""The quick chat: a real mlx_lm.server answers; dead, slow and failing servers give messages."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from profiles.models import ServerProfile
from servers.chat import ChatError, chat_complete, chat_url
from servers.models import ServerState
from servers.tests.conftest import RealServer
from servers.tests.factories import set_server
from testing.net import free_port

HTMX = {"HX-Request": "true"}


@pytest.mark.mlx
def test_chat_with_a_real_server_shows_answer_and_token_counts(
    user_client: Client, make_profile: Callable[..., ServerProfile], mlx_server: RealServer
) -> None:
    profile = make_profile("tiny", model=str(mlx_server.model), port=mlx_server.port)
    set_server(profile, ServerState.RUNNING, pid=mlx_server.pid, port=mlx_server.port)
    response = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hello model"}, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200, html
    assert 'class="chat-answer"' in html and "chat-error" not in html
    prompt_tokens = re.search(r"(\d+) prompt tokens", html)
    completion_tokens = re.search(r"(\d+) completion tokens", html)
    assert prompt_tokens and int(prompt_tokens.group(1)) > 0
    assert completion_tokens and int(completion_tokens.group(1)) > 0
    assert re.search(r"[\d.]+ tokens/s", html)
    # Without JavaScript the whole page comes back with the answer in it.
    page = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "yes"}).content.decode()
    assert "<html" in page and 'class="chat-answer"' in page and "completion tokens" in page


def test_chat_to_a_dead_port_shows_an_error(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    port = free_port()  # nothing listens there any more
    profile = make_profile(port=port)
    set_server(profile, ServerState.RUNNING, port=port)
    response = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "chat-error" in html and "connection refused" in html


def test_chat_needs_a_running_server_and_a_prompt(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile("sleepy")
    html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers=HTMX).content.decode()
    assert "sleepy is stopped: start it first" in html
    set_server(profile, ServerState.RUNNING)
    html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": ""}, headers=HTMX).content.decode()
    assert "Write a prompt first" in html
    assert user_client.get(f"/servers/{profile.pk}/chat/").status_code == 405


class _Failing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "out of memory"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[int]:
    """A stand-in for a model server that answers every request with 500."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_non_200_answer_is_shown(
    user_client: Client, make_profile: Callable[..., ServerProfile], failing_server: int
) -> None:
    profile = make_profile(port=failing_server)
    set_server(profile, ServerState.RUNNING, port=failing_server)
    html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers=HTMX).content.decode()
    assert "The server answered 500" in html and "out of memory" in html


def test_timeout_is_reported() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with pytest.raises(ChatError, match=r"No answer within 0.5 seconds"):
            chat_complete(url=chat_url("127.0.0.1", port), prompt="hi", timeout=0.5)


def test_chat_url_reaches_wildcard_hosts_on_loopback() -> None:
    assert chat_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/v1/chat/completions"
    assert chat_url("::", 8080) == "http://[::1]:8080/v1/chat/completions"
    assert chat_url("10.0.0.5", 81) == "http://10.0.0.5:81/v1/chat/completions"
