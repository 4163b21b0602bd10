from __future__ import annotations

import re
from datetime import timedelta

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts.models import User
from core.web import gateway_base_url as base_url_of
from profiles.models import ServerProfile
from servers.services import server_can_operate

register = template.Library()


@register.filter
def duration(value: timedelta | float | None) -> str:
    """A short human duration: 45 s, 12 min, 3 h 04 min, 2 d 5 h."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


# The supervisor's own probe in the server's access log: `... "GET /health HTTP/1.1" 200 -`.
HEALTH_PROBE = re.compile(r'"(?:GET|HEAD) /health HTTP/[\d.]+"')


@register.filter
def log_lines(text: str) -> str:
    """Log text as one span per line, the supervisor's /health probes marked so the page can hide them."""
    parts = []
    for line in text.splitlines(keepends=True):
        kind = "log-line log-health" if HEALTH_PROBE.search(line) else "log-line"
        parts.append(format_html('<span class="{}">{}</span>', kind, line))
    return mark_safe("".join(parts))  # each part was escaped by format_html


@register.simple_tag(takes_context=True)
def gateway_base_url(context: template.Context) -> str:
    """The gateway's base URL for the page's request (cards rendered once for many requests are
    given it as `gateway_url`): the one address pages show for reaching a model."""
    return str(context.get("gateway_url") or base_url_of(context["request"]))


@register.filter
def without_scheme(url: str) -> str:
    return url.split("://", 1)[-1]


@register.filter
def operable_by(profile: ServerProfile, user: User) -> bool:
    """Whether `user` may stop and restart this profile's server (the buttons they are offered)."""
    return isinstance(user, User) and server_can_operate(user=user, profile=profile)
