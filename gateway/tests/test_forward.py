"""Forwarding between nodes, the refusals (through Django's test client, no model server): who may
send a forwarded request, what a node does with a model on another node it cannot reach, and what
`/v1/models` lists. A forward answered by another node's model server is in e2e/test_nodes.py."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import User, UserStatus
from gateway import forward
from gateway.models import ApiKey, SeenForward, UsageRecord
from gateway.services import SEEN_FORWARD_KEPT, forward_first_seen, key_create, key_revoke
from gateway.tests.test_errors import ThreadClient, post
from nodes.models import Node
from profiles.models import ServerProfile
from servers.supervisor.core import Supervisor
from servers.tests.supervisor_fakes import FakeHost
from testing.net import free_port
from testing.supervisor import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "a-node-secret-for-the-tests"
CHAT = "/v1/chat/completions"
BODY = {"model": "here", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture(autouse=True)
def _node_secret(settings: Any) -> None:
    settings.MLXM_NODE_SECRET = SECRET


def other_node(*, online: bool = True, url: str = "") -> Node:
    """Node b: its supervisor beats (or stopped beating a minute ago); nothing listens at its URL."""
    beat = timezone.now() - (timedelta(0) if online else timedelta(minutes=1))
    return Node.objects.create(name="b", url=url or f"http://127.0.0.1:{free_port()}", heartbeat_at=beat)


def signed(
    user: User, key: ApiKey | None, body: Any = BODY, *, path: str = CHAT, secret: str = SECRET, **changes: str
) -> dict[str, str]:
    """The headers node a sends, as `gateway.forward` makes them; `changes` replace some after signing."""
    fields = {
        "at": str(int(time.time())),
        "nonce": secrets.token_hex(16),
        "user": str(user.pk),
        "key": str(key.pk) if key else "",
    }
    raw = json.dumps(body).encode()
    sign = forward.signature(secret=secret, method="POST", path=path, body=raw, **fields)
    headers = {
        forward.FROM_HEADER: "a",
        forward.USER_HEADER: fields["user"],
        forward.KEY_HEADER: fields["key"],
        forward.AT_HEADER: fields["at"],
        forward.NONCE_HEADER: fields["nonce"],
        forward.SIGNATURE_HEADER: sign,
    }
    headers.update(changes)
    return headers


def test_a_signed_forward_acts_for_that_person_and_key(approved_user: User) -> None:
    ServerProfile.objects.create(name="here", model="/m", port=free_port())  # this node's, stopped
    key = key_create(user=approved_user, name="laptop").key
    answer = post(ThreadClient(), CHAT, BODY, **signed(approved_user, key))
    # Past authentication: the model's own state is the answer, for this person, on this node.
    assert answer.status_code == 503, answer.content
    assert "'here' is stopped" in answer.json()["error"]["message"]
    wait_for(lambda: UsageRecord.objects.exists(), timeout=10, what="the usage record")
    record = UsageRecord.objects.get()
    assert (record.user, record.api_key, record.status) == (approved_user, key, 503)


@pytest.mark.parametrize(
    ("secret_here", "change", "status", "words", "refusal"),
    [
        (SECRET, {"secret": "not-the-secret"}, 401, "signature is missing or wrong", "signature"),
        (SECRET, {forward.SIGNATURE_HEADER: ""}, 401, "signature is missing or wrong", "signature"),
        (SECRET, {forward.SIGNATURE_HEADER: "\xe9" * 64}, 401, "signature is missing or wrong", "signature"),
        # someone else, with the signature made for this person
        (SECRET, {forward.USER_HEADER: "999"}, 401, "signature is missing or wrong", "signature"),
        (SECRET, {"at": str(int(time.time()) - 3600)}, 401, "too old", "expired"),
        ("", {}, 403, "MLXM_NODE_SECRET is not set here", "no-secret"),
    ],
)
def test_a_bad_or_unexpected_forward_is_refused(
    settings: Any, approved_user: User, secret_here: str, change: dict[str, str], status: int, words: str, refusal: str
) -> None:
    settings.MLXM_NODE_SECRET = secret_here
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    headers = _headers_with(approved_user, change)
    answer = post(ThreadClient(), CHAT, BODY, **headers)
    assert answer.status_code == status, answer.content
    assert words in answer.json()["error"]["message"]
    assert answer.json()["error"]["type"] == ("authentication_error" if status == 401 else "permission_error")
    assert answer[forward.REFUSED_HEADER] == refusal  # for the forwarding node: the nodes disagree, not the key
    # The Anthropic API answers in its own shape.
    anthropic_body = {"model": "here", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    headers = _headers_with(approved_user, change, body=anthropic_body, path="/v1/messages")
    answer = post(ThreadClient(), "/v1/messages", anthropic_body, **headers)
    assert answer.status_code == status and answer.json()["type"] == "error", answer.content
    assert not UsageRecord.objects.exists(), "a refused forward is nobody's usage"


def test_a_signed_forward_is_accepted_once(approved_user: User) -> None:
    """Someone who saw the traffic between the nodes cannot send it again: the same signed request
    a second time is refused as a replay; the same request signed anew (a new nonce) is not."""
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    headers = signed(approved_user, None)
    assert post(ThreadClient(), CHAT, BODY, **headers).status_code == 503  # past authentication
    again = post(ThreadClient(), CHAT, BODY, **headers)
    assert again.status_code == 401 and "a replay" in again.json()["error"]["message"]
    assert again[forward.REFUSED_HEADER] == "replayed"
    assert post(ThreadClient(), CHAT, BODY, **signed(approved_user, None)).status_code == 503
    nonce = {forward.NONCE_HEADER: secrets.token_hex(16)}  # a new nonce under the old signature
    assert post(ThreadClient(), CHAT, BODY, **{**headers, **nonce}).status_code == 401


def test_a_forward_writes_its_signature_and_deletes_nothing(approved_user: User) -> None:
    """No DELETE on the path of every forwarded request: the supervisor forgets old signatures."""
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    now = timezone.now()
    SeenForward.objects.create(signature="old", seen_at=now - SEEN_FORWARD_KEPT - timedelta(minutes=1))
    assert post(ThreadClient(), CHAT, BODY, **signed(approved_user, None)).status_code == 503  # accepted
    assert SeenForward.objects.filter(signature="old").exists(), "the request itself deletes nothing"
    assert SeenForward.objects.count() == 2


def test_the_supervisors_housekeeping_forgets_only_the_signatures_whose_age_refuses_them() -> None:
    """Kept for twice a signature's valid age (the sending node's clock may run ahead), then forgotten."""
    supervisor = Supervisor(host=FakeHost())
    at = datetime.fromtimestamp(supervisor.host.time(), UTC)
    SeenForward.objects.create(signature="expired", seen_at=at - SEEN_FORWARD_KEPT - timedelta(seconds=1))
    SeenForward.objects.create(signature="valid", seen_at=at - SEEN_FORWARD_KEPT + timedelta(seconds=1))
    supervisor.prune(at)
    assert list(SeenForward.objects.values_list("signature", flat=True)) == ["valid"]
    assert not forward_first_seen(signature="valid", now=at), "a kept signature is still a replay"


def _headers_with(user: User, change: dict[str, str], **kwargs: Any) -> dict[str, str]:
    change = dict(change)
    secret = change.pop("secret", SECRET)
    at = change.pop("at", None)
    headers = signed(user, None, secret=secret, **kwargs)
    if at is not None:  # signed with that time, so only its age is wrong
        sign = forward.signature(
            secret=secret,
            at=at,
            nonce=headers[forward.NONCE_HEADER],
            method="POST",
            path=kwargs.get("path", CHAT),
            user=str(user.pk),
            key="",
            body=json.dumps(kwargs.get("body", BODY)).encode(),
        )
        headers.update({forward.AT_HEADER: at, forward.SIGNATURE_HEADER: sign})
    headers.update(change)
    return headers


def test_a_forward_for_a_revoked_key_or_a_disabled_person_is_refused(approved_user: User) -> None:
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    key = key_create(user=approved_user, name="laptop").key
    key_revoke(key=key, by=approved_user)
    answer = post(ThreadClient(), CHAT, BODY, **signed(approved_user, key))
    assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]
    User.objects.filter(pk=approved_user.pk).update(status=UserStatus.DISABLED)
    answer = post(ThreadClient(), CHAT, BODY, **signed(approved_user, None))
    assert answer.status_code == 401 and "not an active user" in answer.json()["error"]["message"]


def test_a_model_on_an_offline_node_is_503_naming_the_node(approved_user: User) -> None:
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node(online=False))
    secret = key_create(user=approved_user, name="laptop").secret
    answer = post(ThreadClient(), CHAT, {**BODY, "model": "there"}, authorization=f"Bearer {secret}")
    assert answer.status_code == 503, answer.content
    assert "runs on node 'b', which is offline" in answer.json()["error"]["message"]
    assert answer["Retry-After"] == "30"
    # Node b never saw it: this node records it.
    wait_for(lambda: UsageRecord.objects.filter(status=503, user=approved_user).exists(), timeout=10, what="usage")


def test_a_node_that_does_not_answer_is_503_naming_it(approved_user: User) -> None:
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node())
    secret = key_create(user=approved_user, name="laptop").secret
    for stream in (False, True):
        body = {**BODY, "model": "there", "stream": stream}
        answer = post(ThreadClient(), CHAT, body, authorization=f"Bearer {secret}")
        assert answer.status_code == 503, answer.content
        assert "Node 'b' did not answer at http://127.0.0.1:" in answer.json()["error"]["message"]


def test_a_node_refusing_this_one_is_a_502_that_says_why(approved_user: User, web_server: Any) -> None:
    """Node b, a real gunicorn without MLXM_NODE_SECRET, refuses the forward: the client hears that
    the nodes disagree (502), not that its key is bad; this node records the request."""
    node = other_node(url=web_server.start().url)
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=node)
    secret = key_create(user=approved_user, name="laptop").secret
    answer = post(ThreadClient(), CHAT, {**BODY, "model": "there"}, authorization=f"Bearer {secret}")
    assert answer.status_code == 502, answer.content
    assert "Node 'b' did not accept" in answer.json()["error"]["message"]
    assert "MLXM_NODE_SECRET is not set there" in answer.json()["error"]["message"]
    wait_for(lambda: UsageRecord.objects.filter(status=502, user=approved_user).exists(), timeout=10, what="usage")


def test_no_secret_here_means_no_forwarding(settings: Any, approved_user: User) -> None:
    settings.MLXM_NODE_SECRET = ""
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node())
    secret = key_create(user=approved_user, name="laptop").secret
    answer = post(ThreadClient(), CHAT, {**BODY, "model": "there"}, authorization=f"Bearer {secret}")
    assert answer.status_code == 503 and "set MLXM_NODE_SECRET" in answer.json()["error"]["message"]


def test_a_forwarded_request_is_never_forwarded_again(approved_user: User) -> None:
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node())
    body = {**BODY, "model": "there"}
    answer = post(ThreadClient(), CHAT, body, **signed(approved_user, None, body))
    assert answer.status_code == 503, answer.content
    assert "runs on node 'b', not on this node" in answer.json()["error"]["message"]


def test_the_caller_is_checked_before_any_forward(make_user: Any, approved_user: User) -> None:
    """Node a refuses what b would refuse, without a hop (b's address answers nothing here, so a
    forward would be a 503): unknown keys, models a key may not use, bad bodies."""
    there = ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node())
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    body = {**BODY, "model": "there"}
    assert post(ThreadClient(), CHAT, body, authorization="Bearer mlxm_nope").status_code == 401
    limited = key_create(user=approved_user, name="only-here", profiles=list(ServerProfile.objects.filter(name="here")))
    answer = post(ThreadClient(), CHAT, body, authorization=f"Bearer {limited.secret}")
    assert answer.status_code == 403, answer.content
    secret = key_create(user=approved_user, name="all").secret
    answer = post(ThreadClient(), CHAT, {"model": there.name, "messages": "hi"}, authorization=f"Bearer {secret}")
    assert answer.status_code == 400, answer.content


def test_models_lists_every_nodes_profiles_with_their_node(approved_user: User) -> None:
    ServerProfile.objects.create(name="here", model="/m", port=free_port())
    ServerProfile.objects.create(name="there", model="/m", port=free_port(), node=other_node(online=False))
    secret = key_create(user=approved_user, name="laptop").secret
    answer = ThreadClient().get("/v1/models", headers={"authorization": f"Bearer {secret}"})
    listed = {m["id"]: m for m in answer.json()["data"]}
    assert set(listed) == {"here", "there"}
    assert listed["here"]["node"] == settings.MLXM_NODE_NAME and listed["here"]["state"] == "stopped"
    assert listed["there"]["node"] == "b" and listed["there"]["state"] == "unknown"  # its node is offline
