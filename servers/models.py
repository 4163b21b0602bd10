from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models

from nodes.models import Node
from nodes.selectors import this_node_id
from profiles.models import ServerProfile
from servers.states import State


class ServerState(models.TextChoices):
    STOPPED = State.STOPPED.value, "Stopped"
    STARTING = State.STARTING.value, "Starting"
    RUNNING = State.RUNNING.value, "Running"
    UNHEALTHY = State.UNHEALTHY.value, "Unhealthy"
    BACKOFF = State.BACKOFF.value, "Backoff"
    STOPPING = State.STOPPING.value, "Stopping"
    FATAL = State.FATAL.value, "Fatal"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Server(models.Model):
    """One per profile. The web side writes the desired-state columns; the supervisor writes
    the actual-state columns. Each side saves only its own columns (update_fields)."""

    profile = models.OneToOneField(ServerProfile, on_delete=models.CASCADE, related_name="server")

    # Written by the web side.
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.STOPPED)
    restart_requested = models.PositiveIntegerField(default=0, help_text="Bumped by each Restart request.")
    started_on_demand = models.BooleanField(
        default=False, help_text="The last start came from a /v1/ request, not a person: it may be stopped for room."
    )
    # Written by the gateway: at the start and end of each request (in_flight) and while streaming (last_used_at).
    in_flight = models.IntegerField(default=0, help_text="/v1/ requests being answered right now.")
    last_used_at = models.DateTimeField(null=True, blank=True, help_text="When a /v1/ request last used it.")

    # Written by the supervisor.
    state = models.CharField(max_length=16, choices=ServerState.choices, default=ServerState.STOPPED)
    pid = models.PositiveIntegerField(null=True, blank=True)
    process_started_at = models.FloatField(null=True, blank=True, help_text="psutil create_time of the process.")
    cmdline = models.JSONField(
        default=list, blank=True, help_text="The argv the process was started with (to recognise it on adoption)."
    )
    port = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    restart_handled = models.PositiveIntegerField(default=0, help_text="The last restart_requested acted on.")
    last_exit_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    last_health_at = models.DateTimeField(null=True, blank=True)
    last_health_ms = models.FloatField(null=True, blank=True)
    health_failures = models.PositiveIntegerField(default=0)
    rss_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    cpu_percent = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["profile__name"]
        permissions = [("operate_any_server", "Can stop and restart every server")]

    def __str__(self) -> str:
        return f"{self.profile.name} ({self.state})"

    @property
    def idle_since(self) -> datetime | None:
        """Since when unused through /v1/ (or since it started, if never used since); None while a
        request is in flight or when its profile never stops for idleness."""
        if self.profile.idle_minutes is None or self.in_flight > 0:
            return None
        marks = [m for m in (self.last_used_at, self.state_changed_at, self.started_at) if m is not None]
        return max(marks) if marks else None


class ServerEvent(models.Model):
    """Append-only: every state transition and every user action on a server."""

    class Kind(models.TextChoices):
        TRANSITION = "transition", "State change"
        ACTION = "action", "User action"
        NOTE = "note", "Supervisor note"

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=32, blank=True, help_text="start, stop, restart ...")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cause = models.CharField(max_length=32, blank=True, help_text="user, supervisor, health, exit ...")
    message = models.TextField(blank=True)
    exit_code = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class ServerSample(models.Model):
    """Memory and CPU of one running server at one moment, for the dashboard's charts."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="samples")
    taken_at = models.DateTimeField(db_index=True)
    rss_bytes = models.PositiveBigIntegerField()
    cpu_percent = models.FloatField()

    class Meta:
        ordering = ["taken_at"]
        indexes = [models.Index(fields=["server", "taken_at"])]


class SystemSample(models.Model):
    """One node's memory at one moment, for the System page's chart."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, default=this_node_id, related_name="samples")
    taken_at = models.DateTimeField(db_index=True)
    memory_total = models.PositiveBigIntegerField()
    memory_available = models.PositiveBigIntegerField()
    memory_used_by_servers = models.PositiveBigIntegerField(default=0)
    swap_total = models.PositiveBigIntegerField(null=True, blank=True)  # null: sampled before swap was
    swap_used = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["taken_at"]
