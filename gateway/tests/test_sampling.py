"""The options the gateway checks before they reach mlx-lm's generation thread (gateway/sampling.py),
on a model folder whose config says its vocabulary size. That such values really kill the thread,
and that the checks keep a real server up, is shown by test_live_clients.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.sampling import sampling_guard

VOCABULARY = 256


@pytest.fixture
def model(tmp_path: Path) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": VOCABULARY}))
    return str(tmp_path)


@pytest.mark.parametrize(
    "options",
    [
        {"stop": "END"},
        {"stop": ["END", "\n\n"]},
        {"seed": 0},
        {"seed": 2**64 - 1},
        {"logit_bias": {"0": -100, "255": 100, "17": 2.5, "2": -1000}},
        {"logit_bias": {}},
        {"num_draft_tokens": 3},
        {"stop": None, "seed": None, "logit_bias": None},
    ],
)
def test_what_the_model_server_can_use_goes_through_unchanged(model: str, options: dict[str, Any]) -> None:
    upstream = {"messages": [], **options}
    sampling_guard(upstream, model)
    assert upstream == {"messages": [], **options}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"stop": [["x"]]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"stop": 7}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": ["s"] * 17}, "stop"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"seed": "7"}, "seed"),
        ({"seed": True}, "seed"),
        ({"num_draft_tokens": 10_000}, "num_draft_tokens"),
        ({"logit_bias": {"256": 1}}, "logit_bias"),  # one past the vocabulary
        ({"logit_bias": {"99999999999999999999": 1}}, "logit_bias"),
        ({"logit_bias": {"-1": 1}}, "logit_bias"),
        ({"logit_bias": {"²": 1}}, "logit_bias"),  # a digit to str.isdigit, not to int()
        ({"logit_bias": {"5": "1"}}, "logit_bias"),
        ({"logit_bias": {"5": float("inf")}}, "logit_bias"),
        ({"logit_bias": [5, 1]}, "logit_bias"),
        ({"top_k": -3}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
    ],
)
def test_what_would_kill_the_generation_thread_is_refused_naming_the_option(
    model: str, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(GatewayError) as refused:
        sampling_guard({"messages": [], **options}, model)
    assert refused.value.status == 400
    assert refused.value.message.startswith(f"{named}:")


def test_top_k_beyond_the_vocabulary_means_every_token(model: str) -> None:
    kept, beyond = {"top_k": VOCABULARY - 1}, {"top_k": VOCABULARY}
    sampling_guard(kept, model)
    sampling_guard(beyond, model)
    assert (kept["top_k"], beyond["top_k"]) == (VOCABULARY - 1, 0)


def test_a_logit_bias_for_a_model_of_unknown_vocabulary_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GatewayError, match="vocabulary size is unknown"):
        sampling_guard({"logit_bias": {"1": 1}}, str(tmp_path))
