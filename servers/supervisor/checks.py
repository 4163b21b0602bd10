"""Checks made before a server is spawned. Each returns None when fine, or the refusal in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.formatting import human_bytes
from core.memory import for_models
from library.local import local_model_path, read_config, weights_bytes
from profiles.models import Kind, ServerProfile
from servers.supervisor.host import Host

GiB = 1024**3
MiB = 1024**2
KV_CONTEXT_CAP = 8192  # tokens of KV cache the estimate assumes at most (servers grow it on demand)


def check_port(profile: ServerProfile, host: Host) -> str | None:
    holder = host.port_holder(profile.host, profile.port)
    if holder is None:
        return None
    return f"Port {profile.port} on {profile.host} is already in use by {holder}. Stop it or give this profile another port."


def check_model_present(profile: ServerProfile) -> str | None:
    """The model, and the draft model if any, must be on this machine: servers run offline."""
    for what, model in (("model", profile.model), ("draft model", profile.draft_model)):
        if not model or local_model_path(model) is not None:
            continue
        if model.startswith("/"):
            return f"The {what} folder {model} is not on this machine (no config.json there)."
        return (
            f"The {what} {model} is not on this machine. Download it from the Models page first; "
            "servers never download models by themselves."
        )
    return None


def kv_cache_margin(config: dict[str, Any], weights: int) -> int:
    """A rough KV-cache allowance: fp16 keys and values for every layer over a capped context,
    and never less than a tenth of the weights."""
    nested = config.get("text_config")
    merged = {**(nested if isinstance(nested, dict) else {}), **config}
    try:
        layers = int(merged["num_hidden_layers"])
        heads = int(merged["num_attention_heads"])
        kv_heads = int(merged.get("num_key_value_heads") or heads)
        head_dim = int(merged.get("head_dim") or int(merged["hidden_size"]) // heads)
        context = min(int(merged.get("max_position_embeddings") or KV_CONTEXT_CAP), KV_CONTEXT_CAP)
        kv = 2 * layers * kv_heads * head_dim * context * 2
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        kv = 0
    return max(kv, weights // 10)


def has_kv_cache(profile: ServerProfile) -> bool:
    """Embedding and rerank models read their input once: no KV cache grows with a conversation."""
    return profile.kind not in (Kind.EMBEDDINGS, Kind.RERANK)


def check_memory(profile: ServerProfile, host: Host, *, headroom: int) -> str | None:
    folder = local_model_path(profile.model)
    if folder is None:
        return None
    return memory_refusal(Path(folder), host, headroom=headroom, kv_cache=has_kv_cache(profile))


def memory_shortfall(profile: ServerProfile, host: Host, *, headroom: int) -> int:
    """Bytes more the model needs than is usable now (0: it fits, or its size is unknown)."""
    folder = local_model_path(profile.model)
    if folder is None:
        return 0
    needed = memory_needed(Path(folder), kv_cache=has_kv_cache(profile))
    total, available = host.memory()
    return max(needed - min(available - headroom, for_models(total).bytes), 0)


def memory_needed(folder: Path, *, kv_cache: bool = True) -> int:
    """The weights (a vision tower's included: every safetensors file counts) plus a KV-cache
    allowance, or for a model without one a tenth of the weights of working memory: what a
    server on this model is expected to use."""
    weights = weights_bytes(folder)
    return weights + (kv_cache_margin(read_config(folder), weights) if kv_cache else weights // 10)


def memory_refusal(folder: Path, host: Host, *, headroom: int, kv_cache: bool = True) -> str | None:
    weights = weights_bytes(folder)
    needed = memory_needed(folder, kv_cache=kv_cache)
    margin = needed - weights
    total, available = host.memory()
    limit = for_models(total).bytes
    usable = min(available - headroom, limit)
    if needed <= usable:
        return None
    if usable == limit:
        why = f"models may use {human_bytes(limit)} of this machine's memory ({for_models(total).note})"
    else:
        why = f"{human_bytes(available)} available minus {human_bytes(headroom)} kept free as headroom"
    return (
        f"The model does not fit in memory: it needs about {human_bytes(needed)} "
        f"({human_bytes(weights)} of weights + {human_bytes(margin)} for the "
        f"{'KV cache' if kv_cache else 'working memory'}), but only "
        f"{human_bytes(max(usable, 0))} is usable ({why})."
    )


def precheck(profile: ServerProfile, host: Host, *, headroom: int) -> str | None:
    return check_port(profile, host) or check_model_present(profile) or check_memory(profile, host, headroom=headroom)
