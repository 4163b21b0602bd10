from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from profiles.forms import ProfileForm
from profiles.models import ServerProfile
from profiles.tests.conftest import write_model_folder


def valid_data(**overrides: Any) -> dict[str, Any]:
    data = {"name": "Chat", "model": "mlx-community/Qwen3-4B-4bit", "host": "127.0.0.1", "port": "8090"}
    data["log_level"] = "INFO"
    return {**data, **overrides}


@pytest.mark.django_db
def test_the_minimal_form_is_valid_and_leaves_options_unset() -> None:
    form = ProfileForm(valid_data(host=" LOCALHOST "))
    assert form.is_valid(), form.errors
    data = form.cleaned_data
    assert data["host"] == "localhost" and data["port"] == 8090
    assert data["temperature"] is None and data["kv_bits"] is None and data["chat_template_args"] == {}


@pytest.mark.django_db
def test_every_option_set_to_a_good_value_is_valid(tmp_path: Path, tiny_model: Path) -> None:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    form = ProfileForm(
        valid_data(
            model=str(tiny_model),
            host="::1",
            adapter_path=str(adapters),
            draft_model="mlx-community/Qwen3-0.6B-4bit",
            num_draft_tokens="4",
            trust_remote_code="on",
            log_level="DEBUG",
            chat_template="{{ messages }}",
            use_default_chat_template="on",
            chat_template_args='{"enable_thinking": false}',
            temperature="0.7",
            top_p="1",
            top_k="20",
            min_p="0.05",
            max_tokens="2048",
            decode_concurrency="4",
            prompt_concurrency="2",
            prefill_step_size="1024",
            prompt_cache_size="4",
            prompt_cache_bytes="8GB",
            kv_bits="8",
            kv_group_size="128",
            quantized_kv_start="0",
            allowed_origins="http://localhost:3000,, https://chat.example.com ",
            auto_start="on",
            start_timeout="900",
        )
    )
    assert form.is_valid(), form.errors
    data = form.cleaned_data
    assert data["prompt_cache_bytes"] == 8_000_000_000 and data["kv_bits"] == 8
    assert data["chat_template_args"] == {"enable_thinking": False}
    assert data["allowed_origins"] == "http://localhost:3000, https://chat.example.com"
    assert data["start_timeout"] == 900


BAD: list[tuple[str, str, str]] = [
    ("name", "   ", "name"),
    ("name", "x" * 101, "at most 100"),
    ("model", "", "Enter a model"),
    ("host", "", "Enter a host"),
    ("model", "models/../x y", "repo id"),
    ("model", "./my-model", "absolute path"),
    ("model", "~/models/x", "absolute path"),
    ("model", "/no/such/model/folder", "does not exist"),
    ("host", "example.com", "IP address"),
    ("host", "999.1.1.1", "IP address"),
    ("port", "", "Enter a port"),
    ("port", "80", "at least 1024"),
    ("port", "70000", "at most 65535"),
    ("port", "eighty", "whole number"),
    ("adapter_path", "adapters", "absolute path"),
    ("adapter_path", "/no/such/adapters", "does not exist"),
    ("draft_model", "not a repo!", "repo id"),
    ("num_draft_tokens", "0", "at least 1"),
    ("log_level", "LOUD", "valid choice"),
    ("chat_template", "bad\x00byte", "Null characters"),
    ("description", "bad\x00byte", "Null characters"),
    ("temperature", "-0.1", "at least 0"),
    ("temperature", "hot", "must be a number"),
    ("temperature", "nan", "must be a number"),
    ("temperature", "inf", "must be a number"),
    ("top_p", "0", "more than 0 and at most 1"),
    ("top_p", "1.01", "more than 0 and at most 1"),
    ("top_k", "-1", "at least 0"),
    ("top_k", "2.5", "whole number"),
    ("min_p", "1.5", "at most 1"),
    ("max_tokens", "0", "at least 1"),
    ("chat_template_args", "[1, 2]", "must be a JSON object"),
    ("chat_template_args", '"enable_thinking"', "must be a JSON object"),
    ("chat_template_args", "{enable_thinking: false}", "not valid JSON"),
    ("chat_template_args", '{"a": ' + "[" * 4000 + "]" * 4000 + "}", "nested too deeply"),
    ("chat_template_args", "{" + " " * 10_001 + "}", "at most 10000 characters"),
    ("decode_concurrency", "0", "at least 1"),
    ("prompt_concurrency", "0", "at least 1"),
    ("prefill_step_size", "0", "at least 1"),
    ("prompt_cache_size", "-1", "at least 0"),
    ("prompt_cache_bytes", "lots", "Enter a size"),
    ("prompt_cache_bytes", "0", "more than 0"),
    ("kv_bits", "7", "valid choice"),
    ("kv_group_size", "48", "valid choice"),
    ("quantized_kv_start", "-5", "at least 0"),
    ("start_timeout", "5", "at least 10"),
    ("start_timeout", "100000", "at most 86400"),
    ("start_timeout", "soon", "whole number"),
    ("allowed_origins", "localhost:3000", "Not an origin"),
    ("allowed_origins", "http://a.test/path", "Not an origin"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{f}={v[:20]!r}" for f, v, _ in BAD])
def test_bad_input_names_the_problem(field: str, value: str, message: str) -> None:
    form = ProfileForm(valid_data(**{field: value}))
    assert not form.is_valid()
    assert field in form.errors, form.errors
    assert message.lower() in " ".join(str(e) for e in form.errors[field]).lower()


@pytest.mark.django_db
def test_a_local_path_must_be_a_model_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    a_file = tmp_path / "file.txt"
    a_file.write_text("hi")
    for path, message in ((empty, "no config.json"), (no_weights, "no *.safetensors"), (a_file, "is a file")):
        form = ProfileForm(valid_data(model=str(path)))
        assert not form.is_valid()
        assert message in form.errors["model"][0]
    good = write_model_folder(tmp_path / "good", {"model_type": "llama"})
    assert ProfileForm(valid_data(model=str(good))).is_valid()


@pytest.mark.django_db
def test_a_path_too_long_for_the_system_is_an_error_not_a_crash() -> None:
    form = ProfileForm(valid_data(model="/" + "a" * 300, adapter_path="/" + "b" * 300))
    assert not form.is_valid()
    assert "model" in form.errors and "adapter_path" in form.errors


@pytest.mark.django_db
def test_a_draft_model_needs_its_token_count_and_the_reverse() -> None:
    form = ProfileForm(valid_data(draft_model="mlx-community/Qwen3-0.6B-4bit"))
    assert not form.is_valid()
    assert "needs the number of draft tokens" in form.errors["num_draft_tokens"][0]
    form = ProfileForm(valid_data(num_draft_tokens="3"))
    assert not form.is_valid()
    assert "only used with a draft model" in form.errors["num_draft_tokens"][0]


@pytest.mark.django_db
def test_kv_quantization_details_need_kv_bits() -> None:
    form = ProfileForm(valid_data(kv_group_size="32", quantized_kv_start="100"))
    assert not form.is_valid()
    assert set(form.errors) == {"kv_group_size", "quantized_kv_start"}
    assert ProfileForm(valid_data(kv_bits="4", kv_group_size="32", quantized_kv_start="100")).is_valid()


def test_names_are_unique_ignoring_case(make_profile: Callable[..., ServerProfile]) -> None:
    make_profile(name="Chat", port=9001)
    for name in ("Chat", "chat", "  CHAT  "):
        form = ProfileForm(valid_data(name=name))
        assert not form.is_valid()
        assert "“Chat” already exists" in form.errors["name"][0]
    assert ProfileForm(valid_data(name="Chat 2")).is_valid()


def test_ports_are_unique(make_profile: Callable[..., ServerProfile]) -> None:
    make_profile(name="Chat", port=9001)
    form = ProfileForm(valid_data(name="Other", port="9001"))
    assert not form.is_valid()
    assert form.errors["port"] == ["Port 9001 is already used by the profile “Chat”."]


def test_editing_a_profile_keeps_its_own_name_and_port(make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile(name="Chat", port=9001)
    form = ProfileForm(valid_data(name="CHAT", port="9001"), instance=profile)
    assert form.is_valid(), form.errors


def test_edit_form_shows_chat_template_args_as_json(make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile(chat_template_args={"enable_thinking": False})
    assert ProfileForm(instance=profile)["chat_template_args"].value() == '{"enable_thinking": false}'


@pytest.mark.django_db
def test_a_blank_start_timeout_is_scaled_by_the_models_size(tmp_path: Path, settings: Any) -> None:
    settings.MLXM_START_TIMEOUT = 300
    small = write_model_folder(tmp_path / "small", {"model_type": "llama"})
    big = write_model_folder(tmp_path / "big", {"model_type": "llama"})
    with open(big / "model.safetensors", "wb") as weights:
        weights.truncate(70 * 1024**3)  # sparse: 70 GiB on paper
    assert ProfileForm(initial={"model": str(small)}).fields["start_timeout"].widget.attrs["placeholder"] == "300"
    field = ProfileForm(instance=ServerProfile(model=str(big), port=8123)).fields["start_timeout"]
    assert field.widget.attrs["placeholder"] == "1000"
    assert "300 s plus 10 s per GiB" in field.help_text and "(1000 s for this model)" in field.help_text
    form = ProfileForm(valid_data(model=str(big)))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["start_timeout"] is None
