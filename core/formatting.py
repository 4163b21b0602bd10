"""How the app writes a number of bytes, in Python and in templates (one function for both),
an address, a cell of a CSV export, and help text's `code` spans.

Decimal units (1 GB = 1000**3 bytes), as macOS's Finder and Activity Monitor and the Hugging Face
Hub show sizes, so a model's size here matches what the owner sees there. Templates use it as the
`human_bytes` filter, a builtin (settings.TEMPLATES), instead of Django's binary `filesizeformat`.
"""

from __future__ import annotations

import re
import sys

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

UNITS = ("KB", "MB", "GB", "TB", "PB")


def human_bytes(size: float) -> str:
    """812 bytes, 6.3 MB, 2.3 GB."""
    if abs(size) < 1000:
        return f"{size:.0f} bytes"
    for unit in UNITS:
        size /= 1000
        if abs(size) < 1000 or unit == UNITS[-1]:
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets: 127.0.0.1:8080, [::1]:8080."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def csv_cell(value: object) -> object:
    """A cell of a CSV export as written: text that a spreadsheet would run as a formula (CSV
    injection: `=HYPERLINK(...)`, `+`, `-`, `@`, a tab or a carriage return first) gets a leading
    quote; numbers, booleans and None are left as they are (only text can be someone's input)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return value


register = template.Library()


@register.filter(name="human_bytes")
def human_bytes_filter(value: object) -> str:
    """The same text with a non-breaking space, so a size never wraps between number and unit."""
    try:
        size = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        size = 0.0
    return human_bytes(size).replace(" ", "\xa0")


CODE_SPAN = re.compile(r"`([^`]+)`")


@register.filter
def code_spans(value: object) -> SafeString:
    """Help text written with `backticks` (as in docs) shown with <code> instead, the rest escaped."""
    return mark_safe(CODE_SPAN.sub(r"<code>\1</code>", str(escape(value))))  # escaped first: only <code> is markup


@register.simple_tag
def this_machine() -> str:
    """How pages name the machine they run on: a Mac on macOS, a machine elsewhere (Linux)."""
    return "this Mac" if sys.platform == "darwin" else "this machine"
