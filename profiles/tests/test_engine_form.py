"""The engine and kind in the profile form: which kinds each engine serves, the other engine's
options cleared, the unsafe ones still for administrators only, and the page showing one engine's."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from profiles.argv import build_server_argv
from profiles.forms import ProfileForm
from profiles.models import ServerProfile
from profiles.tests.test_forms import valid_data

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["vision", "embeddings", "rerank"])
def test_mlx_lm_serves_text_chat_only(kind: str) -> None:
    form = ProfileForm(valid_data(engine="mlx_lm", kind=kind))
    assert not form.is_valid()
    assert "mlx-vlm" in form.errors["kind"][0]


def test_a_profile_without_engine_or_kind_is_mlx_lm_chat() -> None:
    form = ProfileForm(valid_data())
    assert form.is_valid(), form.errors
    assert (form.cleaned_data["engine"], form.cleaned_data["kind"]) == ("mlx_lm", "chat")


def test_an_unknown_engine_or_kind_is_refused() -> None:
    form = ProfileForm(valid_data(engine="llama_cpp", kind="audio"))
    assert not form.is_valid()
    assert "engine" in form.errors and "kind" in form.errors


def test_the_other_engines_options_are_cleared() -> None:
    lm_only = {"temperature": "0.7", "decode_concurrency": "4", "chat_template_args": '{"a": 1}'}
    form = ProfileForm(valid_data(engine="mlx_vlm", kind="embeddings", max_num_seqs="4", **lm_only))
    assert form.is_valid(), form.errors
    data = form.cleaned_data
    assert data["temperature"] is None and data["decode_concurrency"] is None and data["chat_template_args"] == {}
    assert data["max_num_seqs"] == 4
    form = ProfileForm(valid_data(engine="mlx_lm", max_num_seqs="4", vision_cache_size="3", temperature="0.7"))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["max_num_seqs"] is None and form.cleaned_data["vision_cache_size"] is None
    assert form.cleaned_data["temperature"] == 0.7


def test_a_bad_value_in_the_hidden_engines_option_does_not_block_the_save() -> None:
    form = ProfileForm(valid_data(engine="mlx_vlm", kind="vision", temperature="hot"))
    assert form.is_valid(), form.errors


def test_a_vlm_option_is_checked_like_any_other() -> None:
    form = ProfileForm(valid_data(engine="mlx_vlm", kind="vision", max_num_seqs="0"))
    assert not form.is_valid()
    assert form.errors["max_num_seqs"] == ["Most sequences at once must be at least 1."]


@pytest.mark.parametrize("fields", [{"trust_remote_code": "on"}, {"host": "0.0.0.0"}])
def test_unsafe_options_stay_for_administrators(make_user: Any, fields: dict[str, str]) -> None:
    member: User = make_user()
    data = valid_data(engine="mlx_vlm", kind="vision", **fields)
    assert not ProfileForm(data, user=member).is_valid()
    admin: User = make_user(admin=True)
    form = ProfileForm(data, user=admin)
    assert form.is_valid(), form.errors


def test_the_page_shows_the_chosen_engines_options_only(admin_client: Client) -> None:
    response = admin_client.post(
        "/profiles/new/", valid_data(engine="mlx_vlm", kind="embeddings", max_num_seqs="2", vision_cache_size="5")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    profile = ServerProfile.objects.get(name="Chat")
    assert (profile.engine, profile.kind, profile.vision_cache_size) == ("mlx_vlm", "embeddings", 5)
    assert "--embedding-model" in build_server_argv(profile) and "--vision-cache-size" in build_server_argv(profile)
    page = admin_client.get(f"/profiles/{profile.pk}/edit/").content.decode()
    assert 'data-engine="mlx_lm" hidden' in page and 'data-engine="mlx_vlm">' in page
    page = admin_client.get("/profiles/new/").content.decode()
    assert 'data-engine="mlx_vlm" hidden' in page and 'data-engine="mlx_lm">' in page


def test_the_profile_page_lists_its_engines_settings_with_its_defaults(admin_client: Client) -> None:
    vlm = ServerProfile.objects.create(name="v", model="/m/v", port=9201, engine="mlx_vlm", kind="vision")
    page = admin_client.get(f"/profiles/{vlm.pk}/").content.decode()
    assert "Vision cache size" in page and "Temperature" not in page and "Decode concurrency" not in page
    assert "server default (2048)" in page, "mlx-vlm's own max tokens, not mlx-lm's 512"
    lm = ServerProfile.objects.create(name="l", model="/m/l", port=9202)
    page = admin_client.get(f"/profiles/{lm.pk}/").content.decode()
    assert "Temperature" in page and "Vision cache size" not in page and "server default (512)" in page
