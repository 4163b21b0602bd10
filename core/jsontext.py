"""Parsed JSON that is not text: `"\\ud800"` (half of a UTF-16 surrogate pair, alone) is valid JSON
and a Python str, but UTF-8 cannot encode it, so neither a database nor a model server takes it.
The JSON API and the `/v1/` gateway both refuse such a body, naming where the string is."""

from __future__ import annotations


def is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def not_text_at(value: object) -> tuple[str, ...] | None:
    """The path to a string (a key or a value) in parsed JSON that UTF-8 cannot encode (for a bad
    key, the path to its object), or None when every string is text. A loop, not recursion: a body
    nested as deep as the JSON parser allows would reach Python's recursion limit here."""
    pending: list[tuple[tuple[str, ...], object]] = [((), value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if not is_text(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if not is_text(key):
                    return path
                pending.append(((*path, key), child))
        elif isinstance(item, list):
            pending.extend(((*path, str(index)), child) for index, child in enumerate(item))
    return None
