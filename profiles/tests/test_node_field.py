"""The profile's node: a select of the nodes that exist (shown once there are several); a name
that is not a node is a form error, not a 500; a one-Mac form needs no node at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.test import Client

from nodes.models import Node
from nodes.selectors import this_node
from profiles.models import ServerProfile
from servers.models import DesiredState, Server, ServerState


def form_data(model: Path, **extra: str) -> dict[str, str]:
    return {"name": "Tiny", "model": str(model), "host": "127.0.0.1", "port": "9311", "log_level": "INFO", **extra}


def test_one_mac_needs_no_node_and_the_profile_lands_on_it(
    user_client: Client, tiny_model: Path, settings: Any
) -> None:
    settings.MLXM_MODEL_DIRS = [tiny_model.parent]
    assert 'name="node"' not in user_client.get("/profiles/new/").content.decode()
    response = user_client.post("/profiles/new/", form_data(tiny_model))
    assert response.status_code == 302
    assert ServerProfile.objects.get().node == this_node()


def test_a_member_picks_another_node_but_not_one_that_does_not_exist(
    user_client: Client, tiny_model: Path, settings: Any
) -> None:
    settings.MLXM_MODEL_DIRS = [tiny_model.parent]
    studio = Node.objects.create(name="studio")
    html = user_client.get("/profiles/new/").content.decode()
    assert '<option value="studio">studio</option>' in html
    assert f'<option value="{this_node().name}" selected>' in html

    response = user_client.post("/profiles/new/", form_data(tiny_model, node="no-such-mac"))
    assert response.status_code == 200
    assert "There is no node with that name." in response.content.decode()
    assert not ServerProfile.objects.exists()

    response = user_client.post("/profiles/new/", form_data(tiny_model, node="studio"))
    assert response.status_code == 302
    assert ServerProfile.objects.get().node == studio


def test_a_profile_whose_server_runs_does_not_move(admin_client: Client, tiny_model: Path, make_profile: Any) -> None:
    profile = make_profile()
    Node.objects.create(name="studio")
    Server.objects.create(profile=profile, state=ServerState.RUNNING, desired_state=DesiredState.RUNNING)
    data = {
        **form_data(tiny_model, node="studio"),
        "name": profile.name,
        "model": profile.model,
        "port": str(profile.port),
    }
    response = admin_client.post(f"/profiles/{profile.pk}/edit/", data)
    assert response.status_code == 200
    assert "stop it before moving the profile to studio" in response.content.decode()
    profile.refresh_from_db()
    assert profile.node == this_node()
