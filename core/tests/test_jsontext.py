"""Where parsed JSON holds a string that is not text (core/jsontext.py)."""

from __future__ import annotations

import json
import sys

from core.jsontext import not_text_at


def test_text_everywhere_is_none() -> None:
    assert not_text_at(json.loads('{"a": ["b", {"c": "d \\ud83d\\ude00"}], "n": 1, "x": null}')) is None


def test_a_lone_surrogate_is_found_by_its_path() -> None:
    body = json.loads('{"model": "m", "messages": [{"role": "user", "content": "a\\ud800b"}]}')
    assert not_text_at(body) == ("messages", "0", "content")
    assert not_text_at(json.loads('{"ok": {"\\udfff": 1}}')) == ("ok",)  # a bad key: its object
    assert not_text_at("\udc00") == ()


def test_a_body_nested_past_the_recursion_limit_is_walked() -> None:
    """json.loads stops near Python's recursion limit, counted from its caller's depth: a view deep
    in middleware gets a body that a recursive walk from there could not finish. A loop can."""
    depth = sys.getrecursionlimit() * 5
    body: object = "\ud800"
    for _ in range(depth):
        body = [body]
    assert not_text_at(body) == ("0",) * depth
