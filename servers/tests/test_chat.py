"""The quick chat: a real mlx_lm.server answers; dead, slow and failing servers give messages."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import Client

from nodes.models import Node
from profiles.models import ServerProfile
from servers.chat import CHAT_MAX_TOKENS, ChatError, chat_complete, chat_url
from servers.models import ServerState
from servers.promptfit import PromptFit, chat_answer_tokens
from servers.tests.conftest import RealServer, real_server
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


# Some models' chat templates refuse a conversation they were not made for (Mistral's raises
# "Conversation roles must alternate ..."); this one insists on a system prompt, which the quick
# chat does not send.
REFUSING_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ raise_exception('This model needs a system prompt before the first user message.') }}"
    "{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}"
)


@pytest.fixture
def refusing_server(tiny_model: Path, tmp_path: Path) -> Iterator[RealServer]:
    """A real mlx_lm.server whose model's chat template refuses the quick chat's conversation."""
    model = tmp_path / "tiny-refusing"
    shutil.copytree(tiny_model, model)
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = REFUSING_TEMPLATE
    config_path.write_text(json.dumps(config))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    with real_server(model) as server:
        yield server


@pytest.mark.mlx
def test_a_real_servers_error_answer_is_shown(
    user_client: Client, make_profile: Callable[..., ServerProfile], refusing_server: RealServer
) -> None:
    profile = make_profile(port=refusing_server.port, model=str(refusing_server.model))
    set_server(profile, ServerState.RUNNING, port=refusing_server.port, pid=refusing_server.pid)
    html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers=HTMX).content.decode()
    error = re.search(r'class="[^"]*chat-error[^"]*"[^>]*>(.*?)</', html, re.DOTALL)
    assert error, html
    assert "The server answered 404" in error.group(1), error.group(1)
    assert "This model needs a system prompt before the first user message." in error.group(1)


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


@pytest.mark.mlx
def test_a_prompt_longer_than_the_context_is_refused_not_cut(
    user_client: Client, make_profile: Callable[..., ServerProfile], tiny_model: Path
) -> None:
    """The tiny model's context is 256 tokens (its config.json), counted with its own tokenizer."""
    port = free_port()  # nothing listens: a prompt that got past the check would say "connection refused"
    profile = make_profile(model=str(tiny_model), port=port)
    set_server(profile, ServerState.RUNNING, port=port)
    long_prompt = " ".join(["hello"] * 300)
    html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": long_prompt}, headers=HTMX).content.decode()
    assert "chat-error" in html
    assert "The prompt is 300 tokens; the model&#x27;s context holds 256" in html
    assert "nothing was sent" in html and "connection refused" not in html
    short = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hello"}, headers=HTMX).content.decode()
    assert "connection refused" in short  # a prompt that fits goes on to the server


class _EmptyAnswer(BaseHTTPRequestHandler):
    """A server that answers with no text and says why (finish_reason), as a thinking model cut
    off by max_tokens does; the tiny random model cannot be made to do that on purpose."""

    def do_POST(self) -> None:
        body = b'{"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 256}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_empty_answer_says_why(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyAnswer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = int(httpd.server_address[1])
        profile = make_profile(port=port)
        set_server(profile, ServerState.RUNNING, port=port)
        html = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "hi"}, headers=HTMX).content.decode()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "chat-empty" in html
    assert "used all 256 answer tokens without writing visible text" in html


def test_chat_after_the_host_is_edited_reaches_the_running_process(
    admin_client: Client, make_profile: Callable[..., ServerProfile], mlx_server: RealServer
) -> None:
    profile = make_profile("moved", model=str(mlx_server.model), port=mlx_server.port)
    started_with = [
        "mlx_lm.server",
        "--model",
        str(mlx_server.model),
        "--host",
        "127.0.0.1",
        "--port",
        str(mlx_server.port),
    ]
    set_server(profile, ServerState.RUNNING, pid=mlx_server.pid, port=mlx_server.port, cmdline=started_with)
    edit = {"name": "moved", "model": profile.model, "host": "::1", "port": str(free_port()), "log_level": "INFO"}
    assert admin_client.post(f"/profiles/{profile.pk}/edit/", edit).status_code == 302
    profile.refresh_from_db()
    assert (profile.host, profile.port) != ("127.0.0.1", mlx_server.port)  # nothing listens where it now says
    html = admin_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "still there?"}, headers=HTMX).content.decode()
    assert 'class="chat-answer"' in html and "chat-error" not in html, html


def test_a_chat_turn_asks_for_at_most_a_quarter_of_the_context(tiny_model: Path) -> None:
    """The tiny model's context is 256 tokens: a turn asks for 64, so a conversation has room for
    more turns; a model whose context is unknown here gets the cap."""
    assert PromptFit(10, 256).answer_tokens(1000) == 246
    assert chat_answer_tokens(model=str(tiny_model), cap=CHAT_MAX_TOKENS) == 64
    assert chat_answer_tokens(model=str(tiny_model), cap=32) == 32
    assert chat_answer_tokens(model="mlx-community/Not-Here-4bit", cap=CHAT_MAX_TOKENS) == CHAT_MAX_TOKENS


class _Recorder(_EmptyAnswer):
    """Whatever listens on this machine's loopback: it records each prompt that reaches it."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        super().do_POST()


def test_chat_with_another_nodes_server_is_not_sent_to_this_machines_loopback(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """A profile on node b listens on b's loopback: sending the prompt to the same port here would
    hand it to whatever listens on this machine (a port the profile's owner chose)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = int(httpd.server_address[1])
        profile = make_profile(port=port)
        ServerProfile.objects.filter(pk=profile.pk).update(node=Node.objects.create(name="b", url="http://b.local"))
        set_server(profile, ServerState.RUNNING, port=port)
        response = user_client.post(f"/servers/{profile.pk}/chat/", {"prompt": "secret"}, headers=HTMX)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _Recorder.received == []
    html = response.content.decode()
    assert "chat-error" in html and "runs on node b" in html, html
