"""What the gateway does when `servers` signals it (connected by `GatewayConfig.ready`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from accounts.models import User
from core.changes import changes_bump
from gateway.cards import card_usage
from gateway.limits.sync import counts_prune, counts_share
from gateway.models import ApiKey
from gateway.services import forward_seen_prune, usage_prune
from nodes.models import Node
from profiles.models import ServerProfile
from servers.dashboard.cards import CardExtra
from servers.models import Server
from servers.signals import cards_shown, prune_due, sampled

log = logging.getLogger(__name__)


@receiver(prune_due)
def gateway_prune(sender: Any, *, now: datetime, **kwargs: Any) -> None:
    """Off the request path, once a minute in the supervisor: old usage records and seen forward
    signatures go."""
    usage_prune(now=now)
    forward_seen_prune(now=now)
    counts_prune(now=now.timestamp())


@receiver(sampled)
def gateway_counts_share(sender: Any, *, now: datetime, **kwargs: Any) -> None:
    """Every few seconds in the supervisor: the limits' counts to and from the other nodes. A
    failure costs only freshness (the next pass tries again), never the supervisor's loop."""
    try:
        counts_share(now=now.timestamp())
    except Exception:
        log.exception("could not share the limits' counts with the other nodes")


@receiver(cards_shown)
def gateway_card_usage(sender: Any, *, profiles: Sequence[ServerProfile], **kwargs: Any) -> dict[int, CardExtra]:
    """The gateway's section on each dashboard card (gateway/cards.py)."""
    return card_usage(profiles)


REMEMBERED = (ApiKey, User, ServerProfile, Server, Node)  # what gateway/directory.py answers from


def routes_changed(sender: Any, **kwargs: Any) -> None:
    """A key, person, profile, server or node changed: every gateway forgets what it remembers
    (the supervisor's state changes bump the same counter in `transition`)."""
    changes_bump()


# Connected to these models only: a delete signal listened to for every model would keep Django
# from deleting any model's rows in bulk (the usage records' pruning among them).
for model in REMEMBERED:
    post_save.connect(routes_changed, sender=model, dispatch_uid=f"routes-saved-{model.__name__}")
    post_delete.connect(routes_changed, sender=model, dispatch_uid=f"routes-deleted-{model.__name__}")


@receiver(m2m_changed, sender=ApiKey.profiles.through)
def key_models_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action.startswith("post_"):
        changes_bump()
