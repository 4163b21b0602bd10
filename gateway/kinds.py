"""What each kind of model answers through `/v1/`, and what each engine needs in a chat request.

`kind_guard` runs on every chat-shaped request (chat completions, completions, Anthropic
messages, responses: all sent upstream as chat) once its profile is known, before any start:

- an embedding or rerank model asked to chat: a 400 naming the endpoint it answers;
- images go to vision models only (a text-only model answers a 400 naming the part), and only as
  `data:image/...` URLs: mlx-vlm opens whatever an image names, a URL or a file on this machine;
  audio and video parts are refused;
- mlx-vlm's server loads whatever model and adapter a request names (`get_cached_model(model)`),
  so it is sent the model it preloaded, never the client's, and no adapter or draft model.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError
from gateway.models import GatewayApi
from profiles.models import Engine, Kind, ServerProfile

# What each kind serves, what that is in words, and what /v1/models says it can do.
SERVES = {Kind.CHAT: "chat", Kind.VISION: "chat", Kind.EMBEDDINGS: "embeddings", Kind.RERANK: "rerank"}
ANSWERS = {
    "chat": "POST /v1/chat/completions, /v1/messages and /v1/responses",
    "embeddings": "POST /v1/embeddings",
    "rerank": "POST /v1/rerank",
}
KIND_WORDS = {
    Kind.CHAT: "a chat",
    Kind.VISION: "a vision chat",
    Kind.EMBEDDINGS: "an embeddings",
    Kind.RERANK: "a rerank",
}
CHAT_APIS = ["chat", "completions", "messages", "responses"]
IMAGE_PARTS = ("image_url", "input_image", "image")
OTHER_MEDIA = ("input_audio", "audio_url", "video_url", "video", "file", "input_file")
# Request fields mlx_vlm.server loads files or models from.
VLM_LOADING_FIELDS = ("adapter_path", "draft_model", "adapters")


def capabilities(profile: ServerProfile, *, tools: bool) -> list[str]:
    """What a client may ask of the model: for a chat model the APIs it answers here (mlx-vlm has no
    completions), `vision` for one that takes images, `tools` where its template renders tools; else
    the one endpoint of its kind."""
    kind = Kind(profile.kind)
    if SERVES[kind] != "chat":
        return [SERVES[kind]]
    apis = [api for api in CHAT_APIS if api != "completions" or profile.engine != Engine.MLX_VLM]
    return [*apis, *(["vision"] if kind == Kind.VISION else []), *(["tools"] if tools else [])]


def refuse_wrong_endpoint(profile: ServerProfile, wanted: str) -> None:
    """A 400 naming what this model answers, when it does not serve `wanted` (chat, embeddings, rerank)."""
    kind = Kind(profile.kind)
    serves = SERVES[kind]
    if serves != wanted:
        asked = "chat" if wanted == "chat" else ANSWERS[wanted]
        raise GatewayError(
            400, f"'{profile.name}' is {KIND_WORDS[kind]} model: it answers {ANSWERS[serves]}, not {asked}."
        )


def _image_url(part: dict[str, Any]) -> Any:
    url = part.get("image_url", part.get("url"))
    return url.get("url") if isinstance(url, dict) else url


def _media_guard(profile: ServerProfile, messages: Any) -> None:
    """Images only to a vision model and only inline; no audio or video to any."""
    for n, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        for m, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            where = f"messages[{n}].content[{m}]"
            if kind in OTHER_MEDIA:
                raise GatewayError(400, f"{where}: '{profile.name}' takes no {kind} parts; send text (and images).")
            if kind not in IMAGE_PARTS:
                continue
            assert isinstance(part, dict)
            if profile.kind != Kind.VISION:
                raise GatewayError(
                    400,
                    f"{where}: this model takes no images ('{profile.name}' is a text-only model); "
                    "send images to a vision model (GET /v1/models lists each model's capabilities).",
                )
            url = _image_url(part)
            if not isinstance(url, str) or not url.strip().lower().startswith("data:image/"):
                raise GatewayError(
                    400, f"{where}.image_url.url: must be a data:image/...;base64,... URL; URLs are never fetched."
                )


def kind_guard(api: GatewayApi, profile: ServerProfile, upstream: dict[str, Any]) -> None:
    """Refuse what `profile`'s kind cannot answer, and give its engine the fields it needs."""
    refuse_wrong_endpoint(profile, "chat")
    _media_guard(profile, upstream.get("messages"))
    if profile.engine != Engine.MLX_VLM:
        return
    if api is GatewayApi.COMPLETIONS:
        raise GatewayError(
            400, f"'{profile.name}' runs on mlx-vlm, which has no /v1/completions: use POST /v1/chat/completions."
        )
    for name in VLM_LOADING_FIELDS:
        upstream.pop(name, None)
    upstream["model"] = profile.model
