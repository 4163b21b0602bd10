from __future__ import annotations

from django import template

from accounts.models import User
from library.models import Download
from library.services import download_can_change

register = template.Library()


@register.filter
def changeable_by(download: Download, user: User) -> bool:
    """Whether `user` may cancel, retry or dismiss this download (the buttons they are offered)."""
    return isinstance(user, User) and download_can_change(user=user, download=download)


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as "1 h 05 min", "3 min 20 s" or "12 s"."""
    if seconds is None:
        return "—"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def params(count: int | None) -> str:
    """A parameter count as people say it: 4.0B, 350M, 12K."""
    if not count:
        return "—"
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return str(count)


@register.filter
def since(timestamp: float | None) -> str:
    """A UNIX timestamp as "3 minutes ago"."""
    from datetime import UTC, datetime

    from django.utils.timesince import timesince

    if not timestamp:
        return "—"
    return f"{timesince(datetime.fromtimestamp(timestamp, tz=UTC))} ago"
