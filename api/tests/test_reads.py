"""The reading endpoints and the models' writes answer in their schema's shape (test client)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from api.tests.conftest import ApiClient
from core.memory import Memory
from library.models import Download
from profiles.models import ServerProfile


def test_system_reads(admin_api: ApiClient, member_api: ApiClient) -> None:
    memory = admin_api.call("get", "/system/memory").json()
    assert memory["total"] > memory["available"] > 0 and memory["recommended_for_models"] > 0
    assert {field.name for field in fields(Memory)} | {"used_by_servers", "recommended_note"} <= memory.keys()
    machine = admin_api.call("get", "/system/machine").json()
    assert "3." in machine["python"] and machine["versions"]
    services = admin_api.call("get", "/system/services")
    assert services.status_code == 200 and services.json()["manager"] in ("systemd", "launchd")
    assert member_api.call("get", "/system/services").status_code == 403
    assert member_api.call("get", "/system/memory").status_code == 200


def test_server_reads_of_a_profile_that_never_ran(admin_api: ApiClient) -> None:
    profile = ServerProfile.objects.create(name="idle", model="mlx-community/Tiny-Llama-4bit", port=18555)
    assert admin_api.call("get", "/servers/").json()[0]["state"] == "stopped"
    health = admin_api.call("get", f"/servers/{profile.pk}/health").json()
    assert health == {
        "profile_id": profile.pk,
        "state": "stopped",
        "healthy": False,
        "last_health_at": None,
        "last_health_ms": None,
        "health_failures": 0,
    }
    assert admin_api.call("get", f"/servers/{profile.pk}/events").json() == []
    assert admin_api.call("get", f"/servers/{profile.pk}/log").json()["missing"] is True
    assert admin_api.call("get", "/servers/999/health").status_code == 404


def test_downloads_are_queued_joined_and_cancelled(admin_api: ApiClient, hub: Any) -> None:
    first = admin_api.call("post", "/models/downloads", {"repo_id": "mlx-community/Medium-Model-8bit"})
    assert first.status_code == 202 and first.json()["state"] == "queued"
    again = admin_api.call("post", "/models/downloads", {"repo_id": "mlx-community/Medium-Model-8bit"}).json()
    assert again["id"] == first.json()["id"]
    assert [d["repo_id"] for d in admin_api.call("get", "/models/downloads").json()] == [
        "mlx-community/Medium-Model-8bit"
    ]
    cancelled = admin_api.call("post", f"/models/downloads/{again['id']}/cancel").json()
    assert cancelled["cancel_requested"] is True
    Download.objects.update(state="cancelled")
    ended = admin_api.call("post", f"/models/downloads/{again['id']}/cancel")
    assert ended.status_code == 409
    bad = admin_api.call("post", "/models/downloads", {"repo_id": "../etc"})
    assert bad.status_code == 400 and bad.json()["field"] == "repo_id"
    assert "is not a Hugging Face repo id" in bad.json()["detail"]
    gone = admin_api.call("post", "/models/delete", {"repo_id": "mlx-community/Not-Here"})
    assert gone.status_code == 409 and gone.json()["detail"] == "mlx-community/Not-Here is not in the model cache."


def test_hub_search_and_model_check(admin_api: ApiClient, hub: Any) -> None:
    found = admin_api.call("get", "/models/search?q=Qwen3&author=any").json()
    assert {m["repo_id"] for m in found} >= {"mlx-community/Qwen3-4B-4bit", "someone-else/Qwen3-4B-mirror"}
    giant = admin_api.call("get", "/models/search?q=Giant").json()
    assert giant[0]["fits"] is False
    bad = admin_api.call("get", "/models/search?sort=sideways")
    assert bad.status_code == 400 and bad.json()["field"] == "sort"
    check = admin_api.call("get", "/models/check?model=/no/such/folder").json()
    assert check["problem"] and check["on_this_machine"] is False
    assert admin_api.call("get", "/models/local").status_code == 200
