"""The memory a server is expected to need, by kind: the weights (a vision tower's included) and
a KV-cache allowance for the models that generate; an embedding or rerank model has no KV cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.models import Engine, Kind, ServerProfile
from servers.supervisor.checks import check_memory, memory_needed
from servers.tests.supervisor_fakes import FakeHost

GiB = 1024**3


def model_folder(root: Path) -> Path:
    """1 GiB of weights (a sparse file) and a config whose KV cache over 8192 tokens is 2.5 GiB."""
    root.mkdir()
    config = {"num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "hidden_size": 8192}
    (root / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 32768}))
    with open(root / "model.safetensors", "wb") as weights:
        weights.truncate(GiB)
    (root / "vision.safetensors").write_bytes(b"\0" * 1024)  # a vision tower in its own file counts too
    return root


def test_the_kv_cache_counts_for_generating_models_only(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m")
    weights = GiB + 1024
    assert memory_needed(folder) == weights + 2 * 80 * 8 * 128 * 8192 * 2
    assert memory_needed(folder, kv_cache=False) == weights + weights // 10


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "fits"), [(Kind.CHAT, False), (Kind.VISION, False), (Kind.EMBEDDINGS, True), (Kind.RERANK, True)]
)
def test_an_embedding_model_fits_where_a_chat_model_of_its_size_does_not(tmp_path: Path, kind: str, fits: bool) -> None:
    folder = model_folder(tmp_path / "m")
    profile = ServerProfile.objects.create(name="p", model=str(folder), port=9300, engine=Engine.MLX_VLM, kind=kind)
    host = FakeHost()
    host.total, host.available = 64 * GiB, 3 * GiB
    refusal = check_memory(profile, host, headroom=0)
    assert (refusal is None) is fits, refusal
    if refusal:
        assert "for the KV cache" in refusal
