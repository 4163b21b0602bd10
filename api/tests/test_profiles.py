"""Profiles through the API: the profile form's checks and messages, the services' refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from api.tests.conftest import ApiClient
from nodes.models import Node
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerState

pytestmark = pytest.mark.postgres


@pytest.fixture
def model_dir(tmp_path: Path) -> str:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(b"0" * 16)
    return str(folder)


def test_create_read_update_duplicate_delete(admin_api: ApiClient, model_dir: str) -> None:
    created = admin_api.call("post", "/profiles/", {"name": "qwen", "model": model_dir, "temperature": 0.5})
    assert created.status_code == 201, created.json()
    profile = created.json()
    assert profile["port"] >= 1024 and profile["state"] == "stopped" and profile["host"] == "127.0.0.1"
    pk = profile["id"]
    changed = admin_api.call("patch", f"/profiles/{pk}", {"description": "small", "chat_template_args": {"a": 1}})
    assert changed.status_code == 200, changed.json()
    assert changed.json()["temperature"] == 0.5 and changed.json()["description"] == "small"
    assert ServerProfile.objects.get(pk=pk).chat_template_args == {"a": 1}
    copy = admin_api.call("post", f"/profiles/{pk}/duplicate").json()
    assert copy["name"] == "qwen (copy)" and copy["port"] != profile["port"]
    assert [p["name"] for p in admin_api.call("get", "/profiles/").json()] == ["qwen", "qwen (copy)"]
    assert admin_api.call("delete", f"/profiles/{copy['id']}").status_code == 204
    assert admin_api.call("get", f"/profiles/{copy['id']}").json() == {
        "detail": "No such profile.",
        "field": None,
        "errors": None,
    }


def test_the_forms_refusals_come_back_naming_the_field(admin_api: ApiClient, model_dir: str) -> None:
    first = admin_api.call("post", "/profiles/", {"name": "one", "model": model_dir}).json()
    cases = [
        ({"name": "two", "model": model_dir, "port": first["port"]}, "port", f"Port {first['port']} is already used"),
        ({"name": "two", "model": model_dir, "port": 80}, "port", "Port must be at least 1024."),
        ({"name": "ONE", "model": model_dir}, "name", "A profile named “one” already exists"),
        ({"model": model_dir}, "name", "Give the profile a name."),
        ({"name": "two", "model": model_dir, "top_k": "many"}, "top_k", "top_k"),
        ({"name": "two", "model": "not a model"}, "model", ""),
    ]
    for body, field, message in cases:
        response = admin_api.call("post", "/profiles/", body)
        assert response.status_code == 400, (body, response.json())
        assert response.json()["field"] == field, (body, response.json())
        assert message in response.json()["detail"], (body, response.json())
    assert ServerProfile.objects.count() == 1


def test_deleting_a_profile_whose_server_runs_is_409_with_the_pages_message(
    admin_api: ApiClient, model_dir: str
) -> None:
    pk = admin_api.call("post", "/profiles/", {"name": "busy", "model": model_dir}).json()["id"]
    Server.objects.create(profile_id=pk, desired_state=DesiredState.RUNNING, state=ServerState.RUNNING)
    response = admin_api.call("delete", f"/profiles/{pk}")
    assert response.status_code == 409
    assert (
        response.json()["detail"]
        == "“busy” cannot be deleted while its server is running and set to run. Stop it first."
    )
    again = admin_api.call("post", f"/servers/{pk}/start")
    assert again.status_code == 409 and again.json()["detail"] == "busy is already running."
    stopped = admin_api.call("post", f"/servers/{pk}/stop")
    assert stopped.json()["desired_state"] == "stopped"


def test_next_free_port_skips_the_profiles_ports(admin_api: ApiClient, model_dir: str) -> None:
    port = admin_api.call("get", "/profiles/next-free-port").json()["port"]
    admin_api.call("post", "/profiles/", {"name": "a", "model": model_dir, "port": port})
    assert admin_api.call("get", "/profiles/next-free-port").json()["port"] != port


def test_unsafe_options_by_a_member_are_refused_as_the_page_refuses_them(member_api: ApiClient, model_dir: str) -> None:
    response = member_api.call("post", "/profiles/", {"name": "x", "model": model_dir, "trust_remote_code": True})
    assert response.status_code == 403
    assert "remote code" in response.json()["detail"].lower()


def test_the_node_is_named_and_an_unknown_one_is_refused(admin_api: ApiClient, model_dir: str) -> None:
    Node.objects.create(name="studio")
    created = admin_api.call("post", "/profiles/", {"name": "on-studio", "model": model_dir, "node": "studio"})
    assert created.status_code == 201, created.json()
    assert created.json()["node"] == "studio"
    here = admin_api.call("post", "/profiles/", {"name": "here", "model": model_dir})
    assert here.json()["node"] == settings.MLXM_NODE_NAME
    refused = admin_api.call("post", "/profiles/", {"name": "nowhere", "model": model_dir, "node": "no-such-mac"})
    assert refused.status_code in (400, 422), refused.content
    assert "There is no node with that name." in refused.content.decode()


def test_a_member_may_not_change_or_delete_someone_elses_profile(
    admin_api: ApiClient, member_api: ApiClient, model_dir: str
) -> None:
    """The page refuses these; the API must too (it once called the services without `by`)."""
    theirs = admin_api.call("post", "/profiles/", {"name": "admins", "model": model_dir}).json()
    changed = member_api.call("patch", f"/profiles/{theirs['id']}", {"description": "mine now"})
    assert changed.status_code == 403, changed.content
    assert changed.json()["detail"] == "Only the owner of “admins” or an administrator can change it."
    deleted = member_api.call("delete", f"/profiles/{theirs['id']}")
    assert deleted.status_code == 403, deleted.content
    assert "can delete it" in deleted.json()["detail"]
    assert ServerProfile.objects.get(pk=theirs["id"]).description == ""


@pytest.mark.parametrize(
    ("body", "message"),
    [({"trust_remote_code": True}, "remote code"), ({"host": "0.0.0.0"}, "serve on 0.0.0.0"), ({"host": "::"}, "::")],
)
def test_a_member_may_not_turn_on_unsafe_options_on_their_own_profile(
    member_api: ApiClient, model_dir: str, body: dict[str, object], message: str, settings: Any
) -> None:
    settings.MLXM_MODEL_DIRS = [str(Path(model_dir).parent)]  # a folder a member may use
    created = member_api.call("post", "/profiles/", {"name": "mine", "model": model_dir})
    assert created.status_code == 201, created.content
    mine = created.json()
    response = member_api.call("patch", f"/profiles/{mine['id']}", body)
    assert response.status_code == 403, response.content
    assert message in response.json()["detail"]
    saved = ServerProfile.objects.get(pk=mine["id"])
    assert (saved.trust_remote_code, saved.host) == (False, "127.0.0.1")


@pytest.mark.parametrize("field", ["model", "draft_model", "adapter_path"])
def test_a_members_paths_outside_the_allowed_folders_get_one_answer_whatever_is_there(
    member_api: ApiClient, model_dir: str, field: str
) -> None:
    """As on the page: the API must not tell a member what is on the disk outside the allowed
    folders (it answered "/etc has no config.json" for one path and "does not exist" for another)."""
    answers = set()
    for path in ("/etc", "/no/such/folder", model_dir):
        body: dict[str, Any] = {"name": "probe", "model": "mlx-community/Qwen3-0.6B-4bit", field: path}
        if field == "draft_model":
            body["num_draft_tokens"] = 3
        response = member_api.call("post", "/profiles/", body)
        assert response.status_code == 403, (path, response.content)
        answers.add(response.json()["detail"])
    assert len(answers) == 1 and "only from the Hugging Face cache and the model folders" in answers.pop()
    assert not ServerProfile.objects.exists()


def test_a_lone_surrogate_in_a_json_string_is_a_400_naming_the_field(admin_api: ApiClient, model_dir: str) -> None:
    """`\\ud800` is valid JSON but no text a database can store: refused before any endpoint runs."""
    pk = admin_api.call("post", "/profiles/", {"name": "one", "model": model_dir}).json()["id"]
    for method, path, body, field in [
        ("post", "/profiles/", '{"name": "a\\ud800b", "model": ' + json.dumps(model_dir) + "}", "name"),
        ("patch", f"/profiles/{pk}", '{"name":"a\\ud800b"}', "name"),
        ("patch", f"/profiles/{pk}", '{"chat_template_args": {"k": ["x", "\\udfff"]}}', "chat_template_args.k.1"),
        ("patch", f"/profiles/{pk}", '{"\\ud800": 1}', None),
    ]:
        response = admin_api.call(method, path, body)
        assert response.status_code == 400, (body, response.content)
        assert "lone UTF-16 surrogate" in response.json()["detail"] and response.json()["field"] == field
    assert list(ServerProfile.objects.values_list("name", flat=True)) == ["one"]


def test_a_body_that_is_not_json_is_a_400_in_the_one_error_shape(admin_api: ApiClient) -> None:
    response = admin_api.call("post", "/profiles/", "{not json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body", "field": None, "errors": None}
