"""Who is asking and which model server answers: key or session, profile by name or alias, the
server's state and loopback address. Synchronous (ORM); the async views call it in one hop."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.db.models import Q
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware

from accounts.models import User, UserStatus
from gateway.errors import GatewayError
from gateway.keys import authenticate_key, key_from_headers
from gateway.models import ApiKey
from gateway.ondemand import WAKES_ON, StartNeeded
from profiles.models import ServerProfile
from profiles.services import profile_can_use
from servers.models import Server
from servers.states import State

ANSWERING = frozenset({State.RUNNING, State.UNHEALTHY})
RETRY_AFTER_STARTING = 5
RETRY_AFTER_STOPPED = 30
NAMES_IN_404 = 5


class ForwardNeeded(Exception):
    """The model runs on another node: the request goes to that node's gateway (gateway/forward.py)."""

    def __init__(self, profile: ServerProfile) -> None:
        super().__init__(profile.name)
        self.profile = profile


@dataclass(frozen=True)
class Caller:
    user: User
    key: ApiKey | None  # None: a signed-in browser (session + CSRF token)

    @cached_property
    def allowed_profile_ids(self) -> frozenset[int] | None:
        """The profiles the key is limited to (read once per request), or None: every profile."""
        if self.key is None:
            return None
        return frozenset(self.key.profiles.values_list("pk", flat=True)) or None


@dataclass(frozen=True)
class Target:
    profile: ServerProfile
    base_url: str  # the model server on loopback, e.g. http://127.0.0.1:8081


def caller_identify(request: HttpRequest) -> Caller:
    raw = key_from_headers(request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", ""))
    if raw:
        key = authenticate_key(raw)
        if key is None:
            raise GatewayError(401, "Invalid API key: it is unknown, revoked or expired, or its user is not active.")
        return Caller(user=key.user, key=key)
    user = request.user
    if user.is_authenticated and getattr(user, "status", None) == UserStatus.APPROVED:
        if request.method != "GET" and _csrf_failure(request):
            raise GatewayError(403, "CSRF check failed: send the page's CSRF token in X-CSRFToken.")
        return Caller(user=user, key=None)  # type: ignore[arg-type]
    raise GatewayError(
        401,
        "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'. Make one under Account → API keys.",
    )


def _csrf_failure(request: HttpRequest) -> bool:
    return CsrfViewMiddleware(lambda r: None).process_view(request, lambda r: None, (), {}) is not None  # type: ignore[arg-type,return-value]


def profile_may_use(caller: Caller, profile: ServerProfile) -> bool:
    """Whom the profile rules let use it (profiles.services.profile_can_use, the same rule as the
    pages), and a key limited to some profiles only those."""
    if not profile_can_use(user=caller.user, profile=profile):
        return False
    allowed = caller.allowed_profile_ids
    return allowed is None or profile.pk in allowed


def profiles_by_name() -> dict[str, ServerProfile]:
    """Every profile under its name and each alias, lowercased (names and aliases are unique)."""
    table: dict[str, ServerProfile] = {}
    for profile in ServerProfile.objects.only("id", "name", "aliases", "host", "port", "on_demand", "node"):
        for name in [profile.name, *profile.alias_list]:
            table.setdefault(name.lower(), profile)
    return table


# What a request needs of the profile it names, its server and its node (one query for all).
ROUTE_FIELDS = (
    "name",
    "aliases",
    "model",
    "host",
    "port",
    "on_demand",
    "keep_running",
    "engine",  # what the model answers and how its server is asked (gateway/kinds.py)
    "kind",
    "decode_concurrency",  # issue 29: the fair queue's capacity (gateway/limits/queue.py)
    "server__state",
    "server__port",
    "server__last_error",
    "node__name",
    "node__url",
    "node__heartbeat_at",
    "node__stopped_at",
)


def profile_named(model: str) -> ServerProfile | None:
    """The profile whose name or alias is `model` (any case), its server loaded, in one query that
    reads only the candidates, not the whole table. None when the database's case folding finds
    none (it folds ASCII only: `profile_resolve` then looks through every name)."""
    wanted = model.strip().lower()
    if not wanted:
        return None
    candidates = (
        ServerProfile.objects.select_related("server", "node")
        .only(*ROUTE_FIELDS)
        .filter(Q(name__iexact=wanted) | Q(aliases__icontains=wanted))
    )
    for profile in candidates:
        if wanted in (name.lower() for name in [profile.name, *profile.alias_list]):
            return profile
    return None


def _server_of(profile: ServerProfile) -> Server | None:
    """The profile's server: loaded with it by `profile_named`, else read now."""
    if ServerProfile.server.is_cached(profile):  # type: ignore[attr-defined]
        return getattr(profile, "server", None)
    return Server.objects.filter(profile=profile).only("state", "port", "last_error").first()


def usable_profiles(caller: Caller) -> list[ServerProfile]:
    return [
        p for p in ServerProfile.objects.select_related("server", "node").order_by("name") if profile_may_use(caller, p)
    ]


def profile_resolve(caller: Caller, model: str) -> ServerProfile:
    """The profile `model` names, or the 404 that lists a few the caller may use."""
    return profile_named(model) or _profile_in_table(caller, model)


def profile_permitted(caller: Caller, profile: ServerProfile) -> ServerProfile:
    """`profile` if the caller may use it (403 when not), whatever its server's state."""
    if not profile_may_use(caller, profile):
        raise GatewayError(403, f"This API key may not use '{profile.name}'.")
    return profile


def target_of(caller: Caller, profile: ServerProfile) -> Target:
    """Where to send a request for `profile`: a 403 for a key that may not use it, a 503 when it
    is not running, `ForwardNeeded` or `StartNeeded` when another node or a start must come first."""
    profile_permitted(caller, profile)
    if not profile.node.is_local:
        raise ForwardNeeded(profile)
    server = _server_of(profile)
    state = State(server.state) if server else State.STOPPED
    if server is None or state not in ANSWERING:
        if profile.on_demand and state in WAKES_ON:
            raise StartNeeded(profile)
        raise _not_running(profile, state, server.last_error if server else "")
    return Target(profile=profile, base_url=loopback_url(profile.host, server.port or profile.port))


def _profile_in_table(caller: Caller, model: str) -> ServerProfile:
    """The profile named `model` among every name, for the names `profile_named` cannot find; a 404
    naming a few known models when there is none."""
    table = profiles_by_name()
    profile = table.get(model.strip().lower())
    if profile is not None:
        return profile
    known = sorted({p.name for p in table.values() if profile_may_use(caller, p)})
    hint = (
        f" Known models: {', '.join(known[:NAMES_IN_404])}{', …' if len(known) > NAMES_IN_404 else ''}."
        if known
        else ""
    )
    raise GatewayError(404, f"No model named '{model[:100]}'.{hint} GET /v1/models lists them.")


def _not_running(profile: ServerProfile, state: State, last_error: str) -> GatewayError:
    if state is State.FATAL:
        why = f": {last_error.strip()[:300]}" if last_error.strip() else ""
        return GatewayError(
            503,
            f"'{profile.name}' failed to start and is fatal{why}. Fix that, then press Start.",
            retry_after=RETRY_AFTER_STOPPED,
        )
    if state in (State.STARTING, State.BACKOFF):
        return GatewayError(
            503, f"'{profile.name}' is {state}; try again in a few seconds.", retry_after=RETRY_AFTER_STARTING
        )
    return GatewayError(
        503, f"'{profile.name}' is {state}. Press Start on its page to run it.", retry_after=RETRY_AFTER_STOPPED
    )


def loopback_url(host: str, port: int) -> str:
    """A server listening on every address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
