"""The kind of model a repo holds: from its tags on the search results, from its config and files
on its page, and "Create a profile" choosing the engine and kind to match."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from library.kinds import engine_for, model_kind
from profiles.models import ENGINE_KINDS, Engine, Kind
from testing.hubstub import HubFile, HubRepo

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("facts", "kind"),
    [
        ({"config": {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}}, "chat"),
        ({"config": {"model_type": "qwen2_vl", "vision_config": {"depth": 32}}}, "vision"),
        ({"tags": ["image-text-to-text", "mlx"]}, "vision"),
        ({"config": {"model_type": "gemma3"}, "files": ["preprocessor_config.json", "model.safetensors"]}, "vision"),
        ({"config": {"model_type": "bert", "architectures": ["BertModel"]}}, "embeddings"),
        ({"config": {"model_type": "qwen3"}, "tags": ["sentence-similarity"]}, "embeddings"),
        ({"pipeline_tag": "feature-extraction"}, "embeddings"),
        ({"config": {"model_type": "xlm-roberta", "architectures": ["XLMRobertaForSequenceClassification"]}}, "rerank"),
        ({"config": {"model_type": "qwen3"}, "tags": ["text-ranking", "sentence-transformers"]}, "rerank"),
        ({}, "chat"),
    ],
)
def test_the_kind_is_read_from_config_tags_and_files(facts: dict[str, Any], kind: str) -> None:
    assert model_kind(**facts) == kind


def test_each_kind_has_an_engine_that_serves_it() -> None:
    for kind in Kind.values:
        assert kind in ENGINE_KINDS[Engine(engine_for(kind))]


def config_repo(repo_id: str, config: dict[str, Any], tags: list[str], *extra: str) -> HubRepo:
    text = json.dumps(config).encode()
    files = {
        "config.json": HubFile("config.json", len(text), text),
        "model.safetensors": HubFile("model.safetensors", 9),
    }
    for name in extra:
        files[name] = HubFile(name, 2, b"{}")
    return HubRepo(repo_id, files, tags=tags)


@pytest.fixture
def kinds_hub(hub: Any) -> Iterator[Any]:
    repos = [
        config_repo(
            "kinds/Tiny-Embed", {"model_type": "bert", "architectures": ["BertModel"]}, ["sentence-similarity"]
        ),
        config_repo("kinds/Tiny-Rank", {"model_type": "bert"}, ["text-ranking"]),
        config_repo(
            "kinds/Tiny-VL", {"model_type": "qwen2_vl", "vision_config": {}}, ["mlx"], "preprocessor_config.json"
        ),
        config_repo("kinds/Tiny-Chat", {"model_type": "llama"}, ["mlx"]),
    ]
    for repo in repos:
        hub.add(repo)
    yield hub
    with hub.lock:
        for repo in repos:
            hub.repos.pop(repo.repo_id, None)


def test_search_results_and_the_model_page_show_the_kind(user_client: Client, kinds_hub: Any) -> None:
    html = user_client.get("/models/search/", {"q": "tiny", "author": "kinds"}).content.decode()
    badges = dict(re.findall(r'<tr data-repo="kinds/([^"]+)">.*?(?:data-kind="(\w+)"|</tr>)', html, re.S))
    assert badges == {"Tiny-Embed": "embeddings", "Tiny-Rank": "rerank", "Tiny-VL": "", "Tiny-Chat": ""}
    page = user_client.get("/models/hub/kinds/Tiny-VL/").content.decode()
    assert 'data-kind="vision"' in page, "from its config and image processor, which search results lack"
    assert "kind=vision&amp;engine=mlx_vlm" in page
    page = user_client.get("/models/hub/kinds/Tiny-Chat/").content.decode()
    assert 'data-kind="chat"' in page and "kind=chat&amp;engine=mlx_lm" in page


def test_create_a_profile_picks_the_engine_and_kind(user_client: Client) -> None:
    form = user_client.get("/profiles/new/", {"model": "kinds/Tiny-Embed", "kind": "embeddings", "engine": "mlx_vlm"})
    html = form.content.decode()
    assert re.search(r'<option value="mlx_vlm" selected>', html) and re.search(
        r'<option value="embeddings" selected>', html
    )
    mismatched = user_client.get("/profiles/new/", {"model": "x/y", "kind": "embeddings", "engine": "mlx_lm"})
    assert re.search(r'<option value="mlx_lm" selected>', mismatched.content.decode()), "an impossible pair is ignored"
