"""A `/v1/` request for a model another node serves: forwarded to that node's gateway.

Who checks what (node a receives the request, node b serves the model):
- Node a authenticates the caller (API key, or session + CSRF token), validates the body's JSON,
  finds the profile and checks that the caller may use it, so a stranger learns nothing and a
  refusal costs no hop. It then sends the body, byte for byte, to b's gateway at `Node.url` + the
  same path, signed with `MLXM_NODE_SECRET`: an HMAC-SHA256 over the time, method, path, the
  caller's user and key ids and the body's hash. The secret itself and the API key never travel.
- Node b refuses every forwarded request when it has no secret (403), or when the signature is
  missing, wrong, more than `SIGNATURE_MAX_AGE` seconds old, or seen before (a replay: each
  forward carries a random nonce under the signature, and b keeps the signatures it saw for as long
  as they are valid) (401), saying why in a header (node
  a then answers its client 502 with that reason: the nodes disagree, the key is fine). Then b
  reads the user and key from the shared database and checks them again (an approved user, a
  usable key of theirs) and goes on as for any request: the key's model list and the profile's rules, the on-demand
  start (its own supervisor, woken on its own machine), its model server on loopback, and the
  usage record, written once, by b, for that person and key.
- A forwarded request is never forwarded again; node a records usage only for a forward that b
  did not act on (b is offline, does not answer, or refused the node).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone

from accounts.models import User, UserStatus
from gateway.errors import Flavour, GatewayError, stream_error_event
from gateway.models import ApiKey
from gateway.routing import Caller
from gateway.services import SIGNATURE_MAX_AGE, forward_first_seen
from gateway.upstream import upstream_client
from nodes.models import Node
from profiles.models import ServerProfile

# Headers of a forwarded request (Django's request.headers is case-insensitive).
FROM_HEADER = "X-Mlxm-Forwarded-From"
USER_HEADER = "X-Mlxm-Forwarded-User"
KEY_HEADER = "X-Mlxm-Forwarded-Key"
AT_HEADER = "X-Mlxm-Forwarded-At"
NONCE_HEADER = "X-Mlxm-Forwarded-Nonce"
SIGNATURE_HEADER = "X-Mlxm-Forwarded-Signature"
FORWARD_HEADERS = (FROM_HEADER, USER_HEADER, KEY_HEADER, AT_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
RELAYED_HEADERS = ("Retry-After", "Cache-Control", "X-Accel-Buffering")
# On a refusal of the forwarding node itself (not of the person): why, so that node tells its
# client what is wrong between the nodes instead of relaying a 401 that reads like a bad API key.
REFUSED_HEADER = "X-Mlxm-Node-Refused"
REFUSALS = {
    "no-secret": "it accepts no forwarded requests (MLXM_NODE_SECRET is not set there)",
    "signature": "this node's signature is wrong: MLXM_NODE_SECRET differs between the nodes",
    "expired": "this node's signature is too old: check the nodes' clocks",
    "replayed": "this node's signed request arrived there a second time (refused as a replay)",
}


@dataclass(frozen=True)
class Forward:
    """Where a request goes: the node and its gateway's address."""

    node: str
    url: str  # e.g. http://studio.local:8000/v1/chat/completions


def signature(*, secret: str, at: str, nonce: str, method: str, path: str, user: str, key: str, body: bytes) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    message = "\n".join(["mlxm-forward-2", at, nonce, method.upper(), path, user, key, body_hash])
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _request_signature(request: HttpRequest, *, secret: str, at: str, nonce: str, user: str, key: str) -> str:
    """The same on both nodes: the path below the gateway's mount point, the body as sent."""
    method, path = request.method or "", request.path_info
    return signature(secret=secret, at=at, nonce=nonce, method=method, path=path, user=user, key=key, body=request.body)


def is_forwarded(request: HttpRequest) -> bool:
    """Claims to come from another node: then it must prove it, and is never forwarded again."""
    return any(header in request.headers for header in FORWARD_HEADERS)


def forwarded_caller(request: HttpRequest) -> Caller:
    """The person on whose behalf another node forwarded `request`, once its signature holds."""
    secret = settings.MLXM_NODE_SECRET
    if not secret:
        raise GatewayError(
            403,
            "This node accepts no forwarded requests: MLXM_NODE_SECRET is not set here.",
            headers={REFUSED_HEADER: "no-secret"},
        )
    at, nonce, user_id, key_id = (
        request.headers.get(h, "") for h in (AT_HEADER, NONCE_HEADER, USER_HEADER, KEY_HEADER)
    )
    expected = _request_signature(request, secret=secret, at=at, nonce=nonce, user=user_id, key=key_id)
    # As bytes: compare_digest refuses str with non-ASCII characters (a header can hold any byte).
    given = request.headers.get(SIGNATURE_HEADER, "").encode("latin-1", "replace")
    if not hmac.compare_digest(expected.encode(), given):
        raise GatewayError(
            401,
            "Forwarded request refused: its node signature is missing or wrong (MLXM_NODE_SECRET).",
            headers={REFUSED_HEADER: "signature"},
        )
    if not at.isdigit() or abs(time.time() - int(at)) > SIGNATURE_MAX_AGE:
        raise GatewayError(
            401,
            "Forwarded request refused: its signature is too old (are the nodes' clocks right?).",
            headers={REFUSED_HEADER: "expired"},
        )
    if not forward_first_seen(signature=expected, now=timezone.now()):
        raise GatewayError(
            401,
            "Forwarded request refused: this node has seen that signed request before (a replay).",
            headers={REFUSED_HEADER: "replayed"},
        )
    user = User.objects.filter(pk=int(user_id), status=UserStatus.APPROVED).first() if user_id.isdigit() else None
    if user is None:
        raise GatewayError(401, "The person this request was forwarded for is not an active user.")
    if not key_id:
        return Caller(user=user, key=None)
    key = ApiKey.objects.filter(pk=int(key_id), user=user).first() if key_id.isdigit() else None
    if key is None or not key.is_usable(timezone.now()):
        raise GatewayError(401, "Invalid API key: it is unknown, revoked or expired, or its user is not active.")
    return Caller(user=user, key=key)


def forward_destination(request: HttpRequest, profile: ServerProfile) -> Forward:
    """Where to send a request for `profile`, which another node serves; 503 naming the node when
    it cannot be reached from here."""
    node: Node = profile.node
    if is_forwarded(request):  # the nodes disagree about where it runs: no second hop, no loop
        raise GatewayError(503, f"'{profile.name}' runs on node '{node.name}', not on this node it was forwarded to.")
    if not node.is_online(timezone.now()):
        seen = (
            f", last heard from {timezone.localtime(node.heartbeat_at):%Y-%m-%d %H:%M:%S}" if node.heartbeat_at else ""
        )
        raise GatewayError(503, f"'{profile.name}' runs on node '{node.name}', which is offline{seen}.", retry_after=30)
    if not node.url:
        raise GatewayError(
            503, f"'{profile.name}' runs on node '{node.name}', which has no MLXM_NODE_URL to reach it at."
        )
    if not settings.MLXM_NODE_SECRET:
        raise GatewayError(
            503, f"'{profile.name}' runs on node '{node.name}': set MLXM_NODE_SECRET on this node to forward to it."
        )
    return Forward(node=node.name, url=node.url.rstrip("/") + request.path_info)


def _signed_headers(request: HttpRequest, caller: Caller) -> dict[str, str]:
    at, user, key = str(int(time.time())), str(caller.user.pk), str(caller.key.pk) if caller.key else ""
    nonce = secrets.token_hex(16)
    sign = _request_signature(request, secret=settings.MLXM_NODE_SECRET, at=at, nonce=nonce, user=user, key=key)
    headers = {
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",  # the bytes are relayed as they come, never re-encoded
        FROM_HEADER: settings.MLXM_NODE_NAME,
        USER_HEADER: user,
        KEY_HEADER: key,
        AT_HEADER: at,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign,
    }
    if "anthropic-version" in request.headers:
        headers["anthropic-version"] = request.headers["anthropic-version"]
    return headers


async def forward_relay(request: HttpRequest, forward: Forward, caller: Caller, flavour: Flavour) -> HttpResponseBase:
    """Send the request to the other node's gateway and relay its answer as it comes: a stream
    event by event, anything else (its errors included) whole, with its status."""
    client = upstream_client()
    # The other gateway may first wait for an on-demand start, then for the model's answer.
    timeout = httpx.Timeout(settings.MLXM_ON_DEMAND_TIMEOUT + settings.MLXM_GATEWAY_TIMEOUT, connect=5.0)
    outgoing = client.build_request(
        "POST", forward.url, content=request.body, headers=_signed_headers(request, caller), timeout=timeout
    )
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise GatewayError(
            503, f"Node '{forward.node}' did not answer at {forward.url} ({type(exc).__name__}).", retry_after=30
        ) from None
    if refusal := answer.headers.get(REFUSED_HEADER):
        await answer.aclose()
        why = REFUSALS.get(refusal, "it refused this node")
        raise GatewayError(502, f"Node '{forward.node}' did not accept the request this node forwarded: {why}.")
    headers = {h: answer.headers[h] for h in RELAYED_HEADERS if h in answer.headers}
    content_type = answer.headers.get("Content-Type", "application/json")
    if answer.status_code == 200 and content_type.startswith("text/event-stream"):
        return StreamingHttpResponse(
            _relayed(answer, forward, flavour), status=200, content_type=content_type, headers=headers
        )
    try:
        body = await answer.aread()
    except httpx.HTTPError as exc:
        raise GatewayError(502, f"Node '{forward.node}' failed while answering ({type(exc).__name__}).") from None
    finally:
        await answer.aclose()
    return HttpResponse(body, status=answer.status_code, content_type=content_type, headers=headers)


async def _relayed(answer: httpx.Response, forward: Forward, flavour: Flavour) -> AsyncIterator[bytes]:
    """Each piece as it arrives (no buffering: the other gateway already sends whole events); a
    client that goes away closes the connection to the other node, which closes its model's."""
    try:
        async for piece in answer.aiter_raw():
            yield piece
    except httpx.HTTPError:
        yield stream_error_event(flavour, 502, f"Node '{forward.node}' stopped in the middle of the answer.")
    finally:
        await answer.aclose()
