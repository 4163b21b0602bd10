"""The shared kernel's one table: counters of changes, read by the processes that keep a copy of
what they count (core/changes.py)."""

from __future__ import annotations

from django.db import models


class ChangeCounter(models.Model):
    """How many times something named `topic` changed; a process that remembers it compares."""

    topic = models.CharField(max_length=40, primary_key=True)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.topic}: {self.value}"
