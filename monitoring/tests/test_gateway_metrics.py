"""The gateway's part of `/metrics`: API keys as scrape credentials, and the request counters
and histograms computed from the usage records."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import User
from gateway.models import GatewayApi, UsageRecord
from gateway.services import key_create, key_revoke


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def grant_read_metrics(user: User) -> User:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="gateway", codename="read_metrics"))
    return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


# --- API keys as credentials ---


def test_a_key_of_an_account_with_the_permission_reads_metrics(make_user: Callable[..., User]) -> None:
    reader = grant_read_metrics(make_user("grafana@example.com"))
    secret = key_create(user=reader, name="prometheus").secret
    assert Client().get("/metrics", headers=bearer(secret)).status_code == 200
    assert Client().get("/metrics", headers={"x-api-key": secret}).status_code == 200


def test_a_members_key_is_403_and_a_revoked_or_unknown_key_401(
    approved_user: User, admin_user: User, make_user: Callable[..., User]
) -> None:
    assert Client().get("/metrics", headers=bearer(key_create(user=approved_user, name="x").secret)).status_code == 403
    admin_key = key_create(user=admin_user, name="scrape")
    assert Client().get("/metrics", headers=bearer(admin_key.secret)).status_code == 200
    key_revoke(key=admin_key.key, by=admin_user)
    assert Client().get("/metrics", headers=bearer(admin_key.secret)).status_code == 401
    assert Client().get("/metrics", headers=bearer("mlxm-not-a-key")).status_code == 401


# --- the figures ---


def record(model: str, api: str, status: int, duration_ms: float, ttft_ms: float | None, p: int, c: int) -> None:
    UsageRecord.objects.create(
        model_name=model, api=api, status=status, duration_ms=duration_ms, ttft_ms=ttft_ms,
        prompt_tokens=p, completion_tokens=c,
    )  # fmt: skip


@pytest.fixture
def usage(db: None) -> None:
    record("tiny", GatewayApi.CHAT, 200, 80, 30, 10, 5)
    record("tiny", GatewayApi.CHAT, 200, 700, 200, 20, 15)
    record("tiny", GatewayApi.CHAT, 502, 3_000, None, 7, 0)
    record("tiny", GatewayApi.MESSAGES, 200, 400, 100, 1, 2)


@pytest.mark.debian  # promtool
def test_requests_tokens_and_histograms_come_from_the_usage_records(admin_client: Client, usage: None) -> None:
    text = admin_client.get("/metrics").content.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    node = settings.MLXM_NODE_NAME

    def value(family: str, sample: str, **labels: str) -> float:
        wanted = {"node": node, **labels}
        return next(s.value for s in families[family].samples if s.name == sample and s.labels == wanted)

    requests = "mlxm_gateway_requests"
    assert value(requests, "mlxm_gateway_requests_total", model="tiny", api="chat", status="200") == 2
    assert value(requests, "mlxm_gateway_requests_total", model="tiny", api="chat", status="502") == 1
    assert value(requests, "mlxm_gateway_requests_total", model="tiny", api="messages", status="200") == 1
    tokens = "mlxm_gateway_prompt_tokens"
    assert value(tokens, "mlxm_gateway_prompt_tokens_total", model="tiny", api="chat") == 37
    completion = "mlxm_gateway_completion_tokens"
    assert value(completion, "mlxm_gateway_completion_tokens_total", model="tiny", api="chat") == 20

    duration = "mlxm_gateway_request_duration_seconds"
    assert value(duration, f"{duration}_count", model="tiny", api="chat") == 3
    assert value(duration, f"{duration}_sum", model="tiny", api="chat") == pytest.approx(3.78)
    assert value(duration, f"{duration}_bucket", model="tiny", api="chat", le="0.1") == 1
    assert value(duration, f"{duration}_bucket", model="tiny", api="chat", le="1.0") == 2
    assert value(duration, f"{duration}_bucket", model="tiny", api="chat", le="+Inf") == 3
    ttft = "mlxm_gateway_time_to_first_token_seconds"
    assert value(ttft, f"{ttft}_count", model="tiny", api="chat") == 2  # the failed one had no first token
    assert value(ttft, f"{ttft}_bucket", model="tiny", api="chat", le="0.05") == 1

    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_key_creation_and_revocation_are_audited(admin_client: Client, admin_user: User, approved_user: User) -> None:
    new = key_create(user=approved_user, name="laptop")
    assert admin_client.post(f"/accounts/keys/{new.key.pk}/revoke/").status_code in (200, 302)
    listed = admin_client.get("/audit/?kind=key").content.decode()
    assert "revoke" in listed and "admin@example.com" in listed
    assert f"laptop ({new.key.prefix}…) of alice@example.com" in listed
