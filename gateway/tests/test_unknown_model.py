"""A request for a model no profile answers to is recorded under one name, `unknown`: a key
holder sending made-up names grows neither /metrics' series nor the Usage page's rows."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from gateway.meter import UNKNOWN_MODEL
from gateway.models import UsageRecord
from gateway.services import key_create
from gateway.tests.test_errors import ThreadClient, post
from profiles.models import ServerProfile
from testing.supervisor import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
MADE_UP = ["made-up-1", "made-up-2", "x" * 90]


def request_series(text: str) -> set[str]:
    (family,) = (f for f in text_string_to_metric_families(text) if f.name == "mlxm_gateway_requests")
    return {sample.labels["model"] for sample in family.samples if sample.name.endswith("_total")}


def test_made_up_model_names_are_one_series_and_one_usage_row(approved_user: User, admin_user: User) -> None:
    ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    secret = key_create(user=approved_user, name="k").secret
    for name in MADE_UP:
        body = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
        answer = post(ThreadClient(), "/v1/chat/completions", body, authorization=f"Bearer {secret}")
        assert answer.status_code == 404 and name[:20] in answer.json()["error"]["message"]
    answer = post(ThreadClient(), "/v1/chat/completions", {"model": "tiny", "messages": []}, x_api_key=secret)
    assert answer.status_code == 503  # a known model, not running: recorded under its own name
    wait_for(lambda: UsageRecord.objects.count() == len(MADE_UP) + 1, timeout=30, what="the usage records")
    assert set(UsageRecord.objects.values_list("model_name", flat=True)) == {UNKNOWN_MODEL, "tiny"}
    errors = UsageRecord.objects.filter(model_name=UNKNOWN_MODEL).values_list("error", flat=True)
    assert any("'made-up-1'" in error for error in errors), "the refusal still says what was asked for"

    scrape = key_create(user=admin_user, name="scrape").secret
    metrics = Client().get("/metrics", headers={"Authorization": f"Bearer {scrape}"}).content.decode()
    assert request_series(metrics) == {UNKNOWN_MODEL, "tiny"}

    page = Client()
    page.force_login(admin_user, backend="accounts.backends.EmailBackend")
    html = page.get("/usage/?days=1").content.decode()
    by_model = html.split("<h2>By model</h2>")[1].split("</article>")[0]
    assert by_model.count('<td data-label="Model">') == 2 and f">{UNKNOWN_MODEL}</td>" in by_model
    assert not any(name in by_model for name in MADE_UP)
