"""The audit trail: who did what, and when. It sits at the bottom of the apps (below accounts too:
it names the user model only through AUTH_USER_MODEL), so every service can write to it; the page
that reads it lives in `monitoring/`."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditKind(models.TextChoices):
    SERVER = "server", "Server"
    PROFILE = "profile", "Profile"
    USER = "user", "User"
    KEY = "key", "API key"
    DOWNLOAD = "download", "Download"
    MODEL = "model", "Model"


class AuditRecord(models.Model):
    """Append-only. Names are copied in, so the record still reads well after the person,
    profile or model it names is gone; `profile_id` is a plain number for the same reason."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_email = models.CharField(max_length=254, blank=True, help_text="Blank: the supervisor (or the system).")
    kind = models.CharField(max_length=16, choices=AuditKind.choices, db_index=True)
    action = models.CharField(max_length=64, help_text="start, stop, approve, delete, running → unhealthy ...")
    subject = models.CharField(max_length=255, help_text="The profile, account, key or repo acted on.")
    profile_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_email or 'supervisor'} {self.action} {self.subject}"

    @property
    def who(self) -> str:
        return self.actor_email or "supervisor"
