"""What kind of model a repo holds (chat, vision chat, embeddings, rerank), read from what the Hub
and the repo say: its tags and pipeline tag, its config.json (a `vision_config`, a BERT-like
architecture, a sequence classifier) and its files (an image processor's config). The search
results and the model page show it, and "Create a profile" picks the engine and kind from it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# The values of profiles.models.Kind and Engine (the library sits below profiles: it names them).
CHAT, VISION, EMBEDDINGS, RERANK = "chat", "vision", "embeddings", "rerank"
MLX_LM, MLX_VLM = "mlx_lm", "mlx_vlm"

RERANK_TAGS = {"text-ranking", "reranker", "rerank"}
EMBEDDING_TAGS = {"sentence-similarity", "feature-extraction", "text-embeddings-inference", "embeddings"}
VISION_TAGS = {"image-text-to-text", "image-to-text", "visual-question-answering", "video-text-to-text"}
VISION_FILES = {"preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json"}
ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "xlm_roberta", "modernbert", "distilbert", "nomic_bert"}


def model_kind(
    *,
    config: dict[str, Any] | None = None,
    tags: Iterable[str] = (),
    files: Iterable[str] = (),
    pipeline_tag: str | None = None,
) -> str:
    """The kind, from whatever is known (search results have tags only; a model page has all)."""
    config = config or {}
    said = {str(tag).lower() for tag in tags} | ({pipeline_tag.lower()} if pipeline_tag else set())
    model_type = str(config.get("model_type") or "").lower()
    architectures = [str(a) for a in config.get("architectures") or [] if isinstance(a, str)]
    classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    if said & RERANK_TAGS or (classifier and model_type in ENCODER_TYPES):
        return RERANK
    if said & EMBEDDING_TAGS or (model_type in ENCODER_TYPES and not classifier):
        return EMBEDDINGS
    if any("Embedding" in a for a in architectures):
        return EMBEDDINGS
    names = {str(name).rsplit("/", 1)[-1] for name in files}
    if said & VISION_TAGS or isinstance(config.get("vision_config"), dict) or names & VISION_FILES:
        return VISION
    return CHAT


def engine_for(kind: str) -> str:
    """mlx-lm for text chat (today's engine), mlx-vlm for every other kind."""
    return MLX_LM if kind == CHAT else MLX_VLM
