"""What the gateway does when `servers` signals it (connected by `GatewayConfig.ready`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.dispatch import receiver

from gateway.cards import card_usage
from gateway.limits.sync import counts_prune, counts_share
from gateway.services import forward_seen_prune, usage_prune
from profiles.models import ServerProfile
from servers.dashboard.cards import CardExtra
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
