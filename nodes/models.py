"""The machines ("nodes") that share this database. Each node's supervisor registers its row on
start and refreshes it on every heartbeat; the web apps of every node read them."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


def stale_after() -> timedelta:
    """A heartbeat older than this means the node's supervisor is gone (crashed, killed, or its Mac is off)."""
    return timedelta(seconds=settings.MLXM_HEARTBEAT_STALE)


class Node(models.Model):
    """One machine running a supervisor (and a web app). The supervisor writes every column but
    `name`; a row exists as soon as anything refers to the node, before its supervisor first ran."""

    name = models.CharField(max_length=100, unique=True, help_text="MLXM_NODE_NAME of the machine.")
    url = models.CharField(max_length=500, blank=True, help_text="Where other nodes reach its web app (MLXM_NODE_URL).")

    # Written by the node's supervisor.
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="The supervisor's process.")
    hostname = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set by a clean stop of the supervisor.")
    memory_total = models.PositiveBigIntegerField(null=True, blank=True)
    memory_available = models.PositiveBigIntegerField(null=True, blank=True)
    memory_for_models = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="What model servers together may use (core.memory.for_models)."
    )
    versions = models.JSONField(default=dict, blank=True, help_text="mlx, mlx-lm and the app's version.")
    hub_cache_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The Hugging Face cache's size on disk, as the supervisor last measured it."
    )
    local_models = models.JSONField(
        default=list, blank=True, help_text='The models in its cache: [{"repo_id": ..., "size": bytes}, ...].'
    )
    local_models_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def stopped_cleanly(self) -> bool:
        return self.stopped_at is not None and self.heartbeat_at is not None and self.stopped_at >= self.heartbeat_at

    def heartbeat_stale(self, now: datetime) -> bool:
        return self.heartbeat_at is None or now - self.heartbeat_at > stale_after()

    def is_online(self, now: datetime) -> bool:
        """Its supervisor beats: fresh heartbeat, and no clean stop since."""
        return not (self.heartbeat_stale(now) or self.stopped_cleanly())

    @property
    def local_repo_ids(self) -> set[str]:
        return {str(model.get("repo_id")) for model in self.local_models if isinstance(model, dict)}

    @property
    def is_local(self) -> bool:
        return self.name == settings.MLXM_NODE_NAME
