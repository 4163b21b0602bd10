"""API keys and usage records of the `/v1/` gateway.

`UsageRecord` is read by other parts (the Usage page, the Prometheus metrics): one row per gateway
request, written once when the request ends, pruned after `MLXM_USAGE_RETENTION_DAYS` by the
supervisor's housekeeping (gateway.services.usage_prune).
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Limits
from profiles.models import ServerProfile


class ApiKey(Limits):
    """A person's key for `/v1/` (and `/api/v1/`). Only a SHA-256 of the secret is kept: the secret
    is 32 random bytes, so a slow password hash would add nothing but latency to every request.
    Its limits (`Limits`) narrow its owner's, never widen them (accounts/limits.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters of the secret, to recognise it.")
    secret_hash = models.CharField(max_length=64, unique=True)
    profiles = models.ManyToManyField(
        ServerProfile, blank=True, related_name="+", help_text="Models this key may use; none listed: all the user may."
    )
    may_manage = models.BooleanField(
        default=False, help_text="May also manage servers and profiles through /api/v1/ (else: only use models)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        permissions = [("read_metrics", "Can read the Prometheus metrics")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class GatewayApi(models.TextChoices):
    CHAT = "chat", "OpenAI chat completions"
    COMPLETIONS = "completions", "OpenAI completions"
    MESSAGES = "messages", "Anthropic messages"
    RESPONSES = "responses", "OpenAI responses"
    EMBEDDINGS = "embeddings", "OpenAI embeddings"
    RERANK = "rerank", "Rerank (Jina/Cohere)"


class UsageRecord(models.Model):
    """One request to `/v1/` that named a model: who, which key and profile, the answer's status,
    tokens (the server's `usage`, else counted from the stream) and timings."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    profile = models.ForeignKey(ServerProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_name = models.CharField(max_length=100, help_text="The profile's name (kept if the profile goes).")
    api = models.CharField(max_length=16, choices=GatewayApi.choices)
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(help_text="HTTP status; a stream that failed midway counts as 502.")
    error = models.CharField(max_length=300, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to the first token (streams) or answer.")
    duration_ms = models.FloatField()
    tokens_per_second = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.model_name} {self.status}"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class SeenForward(models.Model):
    """A signed request another node forwarded here, kept for as long as its signature is valid:
    the same signed request arriving again is a replay and is refused."""

    signature = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.signature[:12]}… at {self.seen_at:%H:%M:%S}"


class NodeCount(models.Model):
    """What one node counted for a limit's subject (`u<user id>`, `k<key id>`) in one span (`m`
    minute, `d` day, `M` month, starting at `start`, epoch seconds): each node's supervisor writes
    its own rows every few seconds and reads the others' sums into its node-local store
    (gateway/limits/sync.py), so a budget holds across nodes, a few seconds behind."""

    node = models.CharField(max_length=100)
    subject = models.CharField(max_length=24)
    span = models.CharField(max_length=1)
    start = models.BigIntegerField()
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "subject", "span", "start"], name="node_count_unique"),
        ]
        indexes = [models.Index(fields=["start"])]

    def __str__(self) -> str:
        return f"{self.node} {self.subject} {self.span}@{self.start}: {self.requests} req, {self.tokens} tok"
