from __future__ import annotations

from django.conf import settings
from django.db import models

from nodes.models import Node
from nodes.selectors import this_node_id


class DownloadState(models.TextChoices):
    QUEUED = "queued", "Queued"
    DOWNLOADING = "downloading", "Downloading"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Download(models.Model):
    """One request to bring a Hub repo into the local cache. The web side creates and cancels;
    the supervisor runs it and writes progress."""

    repo_id = models.CharField(max_length=200, db_index=True)
    revision = models.CharField(max_length=100, default="main")
    node = models.ForeignKey(
        Node,
        on_delete=models.PROTECT,
        default=this_node_id,
        related_name="downloads",
        help_text="The machine whose supervisor downloads it into its own cache.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    cancel_requested = models.BooleanField(default=False)

    state = models.CharField(max_length=16, choices=DownloadState.choices, default=DownloadState.QUEUED, db_index=True)
    bytes_done = models.PositiveBigIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(null=True, blank=True)
    speed_bps = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Written by whoever runs the download (the supervisor's DownloadRunner or `manage.py
    # downloadmodel`): a row left `downloading` whose heartbeat went stale is picked up again.
    runner = models.CharField(max_length=200, blank=True, help_text="host:pid:token of the process running it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("delete_any_model", "Can delete any downloaded model, even one others use")]

    def __str__(self) -> str:
        return f"{self.repo_id} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in (DownloadState.QUEUED, DownloadState.DOWNLOADING)

    @property
    def seconds_left(self) -> float | None:
        if not self.bytes_total or not self.speed_bps or self.state != DownloadState.DOWNLOADING:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.speed_bps)

    @property
    def percent(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(100.0, 100.0 * self.bytes_done / self.bytes_total)


class ModelFolder(models.Model):
    """A folder an administrator allows profiles to serve models from, on one node (its disk):
    with the Hugging Face cache and MLXM_MODEL_DIRS, the places a member may point a profile at.
    Its model folders (itself, or its subfolders holding config.json) are listed under Models."""

    path = models.CharField(max_length=500)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, default=this_node_id, related_name="model_folders")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["node", "path"], name="model_folder_once_per_node")]

    def __str__(self) -> str:
        return self.path
