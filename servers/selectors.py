"""Reads of servers that several views, and the apps below, share."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from django.db.models import Q

from core.memory import Memory, memory, swap
from library.selectors import ModelUse
from nodes.models import Node
from nodes.selectors import this_node
from profiles.models import ServerProfile
from profiles.selectors import ServerStatus
from servers.models import DesiredState, Server, SystemSample
from servers.states import BUSY


def profile_server_statuses(profiles: Sequence[ServerProfile]) -> dict[int, ServerStatus]:
    """The answer to profiles.selectors.server_statuses: one query for any number of profiles."""
    servers = Server.objects.filter(profile__in=[profile.pk for profile in profiles]).only(
        "profile_id", "state", "desired_state"
    )
    return {
        server.profile_id: ServerStatus(
            state=server.state,
            label=server.get_state_display(),
            set_to_run=server.desired_state == DesiredState.RUNNING,
            busy=server.state in BUSY,
        )
        for server in servers
    }


def profile_serving(pid: int) -> ServerProfile | None:
    """The answer to profiles.selectors.profile_serving."""
    server = Server.objects.filter(pid=pid).select_related("profile").first()
    return server.profile if server is not None else None


def model_uses(repo_ids: Collection[str]) -> dict[str, ModelUse]:
    """The answer to library.selectors.model_uses: two queries for any number of models."""
    wanted = set(repo_ids)
    uses: dict[str, ModelUse] = {}
    named = ServerProfile.objects.filter(Q(model__in=wanted) | Q(draft_model__in=wanted)).order_by("name")
    for name, model, draft, owner in named.values_list("name", "model", "draft_model", "owner_id"):
        if model in wanted:
            uses.setdefault(model, ModelUse()).profiles.append(name)
        for repo_id in {model, draft} & wanted:
            uses.setdefault(repo_id, ModelUse()).owners[name] = owner
    busy = (
        Server.objects.filter(Q(profile__model__in=wanted) | Q(profile__draft_model__in=wanted), state__in=BUSY)
        .order_by("profile__name")
        .values_list("profile__name", "profile__model", "profile__draft_model")
    )
    for name, model, draft in busy:
        for repo_id in {model, draft} & wanted:
            uses.setdefault(repo_id, ModelUse()).busy_servers.append(name)
    return uses


def profile_folders() -> list[str]:
    """The answer to library.selectors.profile_folders: this node's profiles' absolute model paths."""
    models = ServerProfile.objects.filter(node=this_node(), model__startswith="/").values_list("model", flat=True)
    return sorted(set(models))


def system_memory(node: Node | None = None) -> Memory:
    """A node's memory and swap (default: this machine's) as its supervisor last sampled them (every
    few seconds, through its Host), so polled pages read only the database and every page shows the
    same figure. Before the first sample: this machine's read directly, another's as unknown (0)."""
    node = node or this_node()
    newest = (
        SystemSample.objects.filter(node=node)
        .order_by("-taken_at")
        .values_list("memory_total", "memory_available", "swap_total", "swap_used")
        .first()
    )
    if newest is None:
        return memory() if node.is_local else Memory(0, 0, 0, 0, 0, source="not sampled yet")
    total, available, swap_total, swap_used = newest
    if swap_total is None or swap_used is None:  # sampled by a supervisor from before swap was sampled
        swap_total, swap_used = swap() if node.is_local else (0, 0)
    return Memory(total, available, total - available, swap_total, swap_used, source="the supervisor's last sample")
