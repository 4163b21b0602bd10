"""Every URL pattern of the project as a concrete URL, found by walking the URLconf (so a view
added later in any app is covered without anyone listing it)."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.regex_helper import normalize

# Sample values tried, in order, for every captured part of a URL.
SAMPLES = ["1", "x", "accounts", "user", "a/b", str(uuid.UUID(int=1))]


@dataclass(frozen=True)
class WalkedURL:
    url: str
    name: str  # "namespace:name" or the route when unnamed
    callback: Callable[..., Any]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


def _fill_route(pattern: RoutePattern) -> str:
    route = str(pattern)

    def sample(match: re.Match[str]) -> str:
        converter = pattern.converters[match.group(2)]
        for value in SAMPLES:
            if re.fullmatch(converter.regex, value):
                return str(converter.to_url(converter.to_python(value)))
        raise AssertionError(f"no sample value fits <{match.group(0)}> in {route!r}")

    return re.sub(r"<(?:(\w+):)?(\w+)>", sample, route).lstrip("^").rstrip("$")


def _fill_regex(pattern: RegexPattern) -> str:
    fmt, params = normalize(pattern.regex.pattern)[0]
    for values in itertools.product(SAMPLES, repeat=len(params)):
        candidate = fmt % dict(zip(params, values, strict=True))
        if pattern.regex.fullmatch(candidate) or pattern.regex.match(candidate):
            return candidate
    raise AssertionError(f"no sample value fits {pattern.regex.pattern!r}")


def _fill(pattern: Any) -> str:
    if isinstance(pattern, RoutePattern):
        return _fill_route(pattern)
    if isinstance(pattern, RegexPattern):
        return _fill_regex(pattern)
    raise AssertionError(f"unknown pattern type {type(pattern).__name__}")


def _walk(patterns: list[Any], prefix: str, namespace: str) -> Iterator[WalkedURL]:
    for entry in patterns:
        part = prefix + _fill(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = ":".join(filter(None, [namespace, entry.namespace or ""]))
            yield from _walk(entry.url_patterns, part, ns)
        elif isinstance(entry, URLPattern):
            name = ":".join(filter(None, [namespace, entry.name or ""])) if entry.name else part
            yield WalkedURL(url=part, name=name, callback=entry.callback)


def all_urls() -> list[WalkedURL]:
    """One URL per pattern, each checked to resolve to its own view."""
    urls = []
    for walked in _walk(get_resolver().url_patterns, "/", ""):
        match = resolve(walked.url)
        if match.func is walked.callback:
            urls.append(walked)
        else:  # shadowed by an earlier pattern for these sample values: test that one anyway
            urls.append(WalkedURL(url=walked.url, name=walked.name, callback=match.func))
    return urls
