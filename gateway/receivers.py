"""What the gateway does when `servers` signals it (connected by `GatewayConfig.ready`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.dispatch import receiver

from gateway.services import forward_seen_prune, usage_prune
from servers.signals import prune_due


@receiver(prune_due)
def gateway_prune(sender: Any, *, now: datetime, **kwargs: Any) -> None:
    """Off the request path, once a minute in the supervisor: old usage records and seen forward
    signatures go."""
    usage_prune(now=now)
    forward_seen_prune(now=now)
