"""Media only inline: a model server given a URL in an image, audio, video or file part fetches
it, so any key holder could make this machine request any address (loopback services included).
Such parts are accepted only as `data:` URLs or base64; any other URL is refused with a 400 naming
the field."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import GatewayError

SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.\-]*):")  # base64 has no ':', so only a URL matches
# OpenAI chat content parts that carry media, and the fields a server may read an address from
OPENAI_MEDIA = ("image_url", "input_audio", "video_url", "audio_url", "file", "input_image", "input_file")
INLINE_HINT = "send the data inline, as a data: URL (data:<type>;base64,...) or base64; URLs are never fetched."


def _is_url(value: Any) -> bool:
    match = SCHEME.match(value) if isinstance(value, str) else None
    return match is not None and match.group(1).lower() != "data"


def _fetchable_at(value: Any, where: str) -> str | None:
    """The first place in `value` holding a URL that is not a data: URL, or None."""
    if _is_url(value):
        return where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = ((f"[{n}]", v) for n, v in enumerate(value))
    else:
        return None
    for key, inner in items:
        found = _fetchable_at(inner, f"{where}{key}" if isinstance(value, list) else f"{where}.{key}")
        if found is not None:
            return found
    return None


def openai_inline_guard(messages: Any) -> None:
    """Refuse (400) a chat completions message part whose media is a URL to fetch."""
    if not isinstance(messages, list):
        return
    for n, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for m, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") == "text":
                continue
            for field in OPENAI_MEDIA:
                if (where := _fetchable_at(part.get(field), f"messages[{n}].content[{m}].{field}")) is not None:
                    raise GatewayError(400, f"{where}: a URL; {INLINE_HINT}")


def anthropic_inline_guard(messages: Any) -> None:
    """Refuse (400) an Anthropic image or document block (at any depth, tool results included)
    whose source is a URL."""
    if not isinstance(messages, list):
        return
    for n, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        _anthropic_blocks(content, f"messages.{n}.content")


def _anthropic_blocks(blocks: Any, where: str) -> None:
    if not isinstance(blocks, list):
        return
    for m, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        source = block.get("source")
        if isinstance(source, dict):
            if source.get("type") == "url" or _is_url(source.get("url")):
                raise GatewayError(400, f"{where}.{m}.source: a URL source; {INLINE_HINT}")
            if (found := _fetchable_at(source.get("data"), f"{where}.{m}.source.data")) is not None:
                raise GatewayError(400, f"{found}: a URL; {INLINE_HINT}")
        _anthropic_blocks(block.get("content"), f"{where}.{m}.content")
