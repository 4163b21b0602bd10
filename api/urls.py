"""`/api/v1/`: ninja's views, let past the pages' login middleware because they authenticate
every request themselves (a key, or for the docs a session: api/main.py). Ninja's root path (only
there to find the prefix; it answers 404) gets the docs' check too, so that no path is open."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver

from accounts.middleware import public
from api.main import api, key_or_session


def _public_patterns(patterns: list[Any]) -> list[Any]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            _public_patterns(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            if entry.name == "api-root":
                entry.callback = key_or_session(entry.callback)
            public(entry.callback)
    return patterns


urls, _app_name, _namespace = api.urls
urlpatterns = _public_patterns(list(urls))
