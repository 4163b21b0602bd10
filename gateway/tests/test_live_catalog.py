"""Both SDKs' `models.retrieve` and an unknown path through the real clients and gunicorn, a real
`mlx_lm.server` behind: what the SDKs parse, not only what the test client sees."""

from __future__ import annotations

import anthropic
import openai
import pytest

from gateway.tests.conftest import Live
from gateway.tests.test_live_clients import ant, anthropic_error, oai, openai_error

pytestmark = pytest.mark.mlx


def test_models_retrieve_with_both_sdks(live: Live) -> None:
    model = oai(live).models.retrieve("tiny")
    assert (model.id, model.object, model.owned_by) == ("tiny", "model", "mlx-manager")
    assert model.created == int(live.profile.created_at.timestamp())
    assert (model.model_extra or {})["state"] == "running"
    info = ant(live).models.retrieve("claude-tiny")  # by alias
    assert (info.id, info.type, info.display_name) == ("tiny", "model", "tiny")
    assert info.created_at == live.profile.created_at

    assert isinstance(openai_error(lambda: oai(live).models.retrieve("gpt-5")), openai.NotFoundError)
    assert isinstance(anthropic_error(lambda: ant(live).models.retrieve("gpt-5")), anthropic.NotFoundError)
    # an endpoint the gateway does not serve: the SDK parses the JSON error
    o = openai_error(lambda: oai(live).images.generate(model="tiny", prompt="x"))
    assert isinstance(o, openai.NotFoundError) and "/v1/images/generations" in str(o.message)
    # one it serves, for another kind of model: the 400 names what this one answers
    o = openai_error(lambda: oai(live).embeddings.create(model="tiny", input="x"))
    assert isinstance(o, openai.BadRequestError) and "/v1/chat/completions" in str(o.message)
