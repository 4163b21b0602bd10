from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """`/metrics` and the audit page: the app that reads every other app, so it sits at the top."""

    name = "monitoring"
    verbose_name = "Monitoring"
