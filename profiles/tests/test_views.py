from __future__ import annotations

import re
import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from accounts.models import User
from library.local import cached_repo_ids
from profiles import ports
from profiles.argv import build_server_argv
from profiles.forms import ProfileForm
from profiles.models import ServerProfile
from profiles.tests.test_ports import _unused_port_block
from servers.models import Server

HTMX = {"HX-Request": "true"}


def test_pages_need_an_approved_login(db: Any) -> None:
    for url in ("/profiles/", "/profiles/new/", "/profiles/check/port/?port=9000"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_list_shows_name_model_and_server_state_not_the_port(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    idle = make_profile(name="Idle one", port=9301)
    busy = make_profile(name="Busy one", model="mlx-community/Llama-3.2-1B-Instruct-4bit", port=9302)
    Server.objects.create(profile=busy, desired_state="running", state="running")
    html = user_client.get("/profiles/").content.decode()
    assert "Idle one" in html and "Busy one" in html and "mlx-community/Llama-3.2-1B-Instruct-4bit" in html
    assert "9301" not in html and "9302" not in html  # the servers' own ports take no key: not a place to go
    assert html.count('class="badge state-stopped"') == 1 and html.count('class="badge state-running"') == 1
    assert f'href="/profiles/{idle.pk}/"' in html


def test_empty_list_invites_to_create(user_client: Client) -> None:
    assert "Create your first profile" in user_client.get("/profiles/").content.decode()


def test_detail_shows_the_settings_and_the_shell_quoted_command(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile(name="Chat", chat_template_args={"enable_thinking": False}, temperature=0.6)
    html = user_client.get(f"/profiles/{profile.pk}/").content.decode()
    expected = shlex.join(build_server_argv(profile))
    assert "--chat-template-args" in expected
    from django.utils.html import escape

    assert escape(expected) in html
    assert 'id="copy-command"' in html
    assert "0.6" in html and "stopped" in html


def test_new_form_suggests_the_next_free_port_and_takes_the_model_from_the_link(
    user_client: Client, make_profile: Callable[..., ServerProfile], settings: Any
) -> None:
    base = _unused_port_block(10)
    settings.MLXM_PORT_BASE = base
    make_profile(port=base + 3)
    response = user_client.get("/profiles/new/?model=mlx-community/Qwen3-4B-4bit")
    form = response.context["form"]
    assert form["port"].value() == base + 4
    assert form["model"].value() == "mlx-community/Qwen3-4B-4bit"
    assert f'value="{base + 4}"' in response.content.decode()


def test_create_through_the_form(user_client: Client, approved_user: User, tiny_model: Path, settings: Any) -> None:
    settings.MLXM_MODEL_DIRS = [tiny_model.parent]  # a member may use folders under MLXM_MODEL_DIRS
    data = {"name": "Tiny", "model": str(tiny_model), "host": "127.0.0.1", "port": "9310", "log_level": "INFO"}
    response = user_client.post("/profiles/new/", {**data, "temperature": "0.5", "auto_start": "on"})
    profile = ServerProfile.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/profiles/{profile.pk}/"
    assert (profile.temperature, profile.auto_start, profile.created_by) == (0.5, True, approved_user)
    assert profile.owner == approved_user


def test_create_with_errors_shows_the_form_again(user_client: Client) -> None:
    response = user_client.post("/profiles/new/", {"name": "", "model": "x", "port": "80", "host": "nope"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Give the profile a name." in html and "at least 1024" in html and "IP address" in html
    assert ServerProfile.objects.count() == 0


def test_edit_saves_and_says_a_running_server_needs_a_restart(
    admin_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile(name="Chat", port=9320)
    Server.objects.create(profile=profile, desired_state="running", state="running")
    page = admin_client.get(f"/profiles/{profile.pk}/edit/")
    assert "Its server is running" in page.content.decode()
    data = {"name": "Chat", "model": profile.model, "host": "0.0.0.0", "port": "9321", "log_level": "INFO"}
    bad = admin_client.post(f"/profiles/{profile.pk}/edit/", {**data, "name": "Renamed", "port": "80"})
    assert "Edit “Chat”" in bad.content.decode()  # the heading names the saved profile, not the typed name
    response = admin_client.post(f"/profiles/{profile.pk}/edit/", data, follow=True)
    profile.refresh_from_db()
    assert (profile.host, profile.port) == ("0.0.0.0", 9321)
    assert "Restart its server" in response.content.decode()


def test_duplicate_and_delete_are_post_only(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile()
    assert user_client.get(f"/profiles/{profile.pk}/duplicate/").status_code == 405
    assert user_client.get(f"/profiles/{profile.pk}/delete/").status_code == 405
    assert user_client.post("/profiles/999999/delete/").status_code == 404


def test_duplicate_view(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile(name="Chat", auto_start=True)
    response = user_client.post(f"/profiles/{profile.pk}/duplicate/", follow=True)
    copy = ServerProfile.objects.get(name="Chat (copy)")
    assert response.redirect_chain[-1][0] == f"/profiles/{copy.pk}/"
    assert "Copied “Chat” to “Chat (copy)”" in response.content.decode()


def test_delete_refused_while_running_with_a_clear_message(
    admin_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile(name="Chat")
    Server.objects.create(profile=profile, desired_state="running", state="running")
    response = admin_client.post(f"/profiles/{profile.pk}/delete/", follow=True)
    assert "cannot be deleted while its server is running" in response.content.decode()
    assert ServerProfile.objects.filter(pk=profile.pk).exists()
    Server.objects.filter(profile=profile).update(desired_state="stopped", state="stopped")
    response = admin_client.post(f"/profiles/{profile.pk}/delete/", follow=True)
    assert "Profile “Chat” deleted." in response.content.decode()
    assert not ServerProfile.objects.filter(pk=profile.pk).exists()


def test_port_check_as_you_type(
    user_client: Client, make_profile: Callable[..., ServerProfile], listening_socket: socket.socket
) -> None:
    chat = make_profile(name="Chat", port=9330)
    taken = user_client.get("/profiles/check/port/?port=9330", headers=HTMX).content.decode()
    assert 'data-level="error"' in taken and "Chat" in taken
    own = user_client.get(f"/profiles/check/port/?port=9330&profile={chat.pk}", headers=HTMX).content.decode()
    assert 'data-level="ok"' in own
    held = listening_socket.getsockname()[1]
    foreign = user_client.get(f"/profiles/check/port/?port={held}", headers=HTMX).content.decode()
    assert 'data-level="warning"' in foreign and "PID" in foreign


def test_port_check_scans_the_sockets_once_for_a_few_keystrokes(
    user_client: Client, monkeypatch: pytest.MonkeyPatch, listening_socket: socket.socket
) -> None:
    """Typing a port asks for a check per keystroke; the machine's sockets are listed once for them."""
    scans = []
    real_scan = ports._listening

    def counted_scan() -> list[tuple[int, int | None]]:
        scans.append(1)
        return real_scan()

    monkeypatch.setattr(ports, "_listening", counted_scan)
    held = str(listening_socket.getsockname()[1])
    for typed in (str(int(held) - 1), held):  # ephemeral ports: both in range
        html = user_client.get("/profiles/check/port/", {"port": typed}, headers=HTMX).content.decode()
    assert 'data-level="warning"' in html and "PID" in html
    assert len(scans) == 1


def test_model_check_shows_facts_and_family_suggestions(admin_client: Client, qwen3_folder: Path) -> None:
    html = admin_client.get("/profiles/check/model/", {"model": str(qwen3_folder)}, headers=HTMX).content.decode()
    assert "qwen3" in html and "40,960 tokens" in html and "4-bit (group 64)" in html
    assert "enable_thinking" in html and 'name="apply_suggestions"' in html
    bad = admin_client.get("/profiles/check/model/", {"model": "relative/path/x y"}, headers=HTMX).content.decode()
    assert 'data-check="problem"' in bad
    remote = admin_client.get("/profiles/check/model/", {"model": "someone/not-here"}, headers=HTMX).content.decode()
    assert 'data-check="remote"' in remote


def test_model_check_reads_a_hub_repos_config_without_downloading_it(user_client: Client, hub: Any) -> None:
    repo = "mlx-community/Qwen3-4B-4bit"  # on the stand-in hub (config.json says qwen3), not downloaded
    html = user_client.get("/profiles/check/model/", {"model": repo}, headers=HTMX).content.decode()
    assert 'data-check="hub"' in html and "Not on this machine yet" in html
    assert "qwen3" in html and "40,960 tokens" in html and "4-bit (group 64)" in html and "enable_thinking" in html
    assert any(path.endswith(f"/{repo}/resolve/main/config.json") for _m, path, _r in hub.requests)
    assert repo not in cached_repo_ids()  # read, not put in the cache (it would look downloaded)
    hub.down = True  # a Hub that cannot answer: the form says so and carries on
    other = user_client.get("/profiles/check/model/", {"model": "mlx-community/Medium-Model-8bit"}, headers=HTMX)
    assert 'data-check="remote"' in other.content.decode() and "Hub" in other.content.decode()


def test_cached_models_are_offered_and_recognised(user_client: Client, cached_repo: str) -> None:
    html = user_client.get("/profiles/new/").content.decode()
    assert f'<option value="{cached_repo}">' in html
    check = user_client.get("/profiles/check/model/", {"model": cached_repo}, headers=HTMX).content.decode()
    assert 'data-check="local"' in check and "qwen3" in check


def test_suggestions_fill_only_empty_fields(admin_client: Client, qwen3_folder: Path) -> None:
    data = {
        "name": "Qwen",
        "model": str(qwen3_folder),
        "host": "127.0.0.1",
        "port": "9340",
        "log_level": "INFO",
        "temperature": "1.1",  # typed by the user: kept
        "chat_template_args": '{"enable_thinking": true, "x": 1}',  # typed: kept, nothing added over it
        "trust_remote_code": "on",
        "apply_suggestions": "1",
    }
    response = admin_client.post("/profiles/new/", data)
    assert response.status_code == 200 and ServerProfile.objects.count() == 0
    form = response.context["form"]
    assert form["temperature"].value() == "1.1"
    assert form["top_p"].value() == "0.8" and form["top_k"].value() == "20"
    assert form["chat_template_args"].value() == '{"enable_thinking": true, "x": 1}'
    assert form["trust_remote_code"].value() is True and form["use_default_chat_template"].value() is False
    data["chat_template_args"] = '{"x": 1}'
    form = admin_client.post("/profiles/new/", data).context["form"]
    assert form["chat_template_args"].value() == '{"enable_thinking": false, "x": 1}'


def test_new_form_when_no_port_is_left(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    make_profile(port=65535)
    response = user_client.get("/profiles/new/")
    assert response.status_code == 200
    assert "No free port left" in response.content.decode()
    assert response.context["form"]["port"].value() is None


# --- bad input over every field: a form error or a redirect, never a 500 ---

ANY_TEXT = st.one_of(
    st.text(max_size=60),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "/", "/tmp", "../x", "{}", "[]", "null", '{"a":', "\x00", "1e999", "0x10", "٣"]),
)
FIELDS = list(ProfileForm.base_fields)


@pytest.mark.django_db
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(FIELDS), ANY_TEXT, min_size=1), apply=st.booleans())
def test_any_input_gives_a_form_error_or_a_saved_profile(
    admin_client: Client, data: dict[str, str], apply: bool
) -> None:
    form = ProfileForm(data)
    valid = form.is_valid()
    before = ServerProfile.objects.count()
    response = admin_client.post("/profiles/new/", {**data, "apply_suggestions": "1"} if apply else data)
    if apply:  # suggestions fill the form again; nothing is saved
        assert response.status_code == 200 and ServerProfile.objects.count() == before
    elif not valid:  # the page shows the form's own errors, field by field, and saves nothing
        assert response.status_code == 200
        assert set(response.context["form"].errors) == set(form.errors)
        assert ServerProfile.objects.count() == before
    elif response.status_code == 302:  # saved, once
        assert ServerProfile.objects.count() == before + 1
    else:  # valid, but the service refused it (a conflict): said on the form, nothing saved
        assert response.status_code == 200 and response.context["form"].non_field_errors()
        assert ServerProfile.objects.count() == before
    for url in ("/profiles/check/port/", "/profiles/check/model/"):
        assert admin_client.get(url, {"port": data.get("port", ""), "model": data.get("model", "")}).status_code == 200


def test_new_profile_form_suggests_a_free_name_from_the_model(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    html = user_client.get("/profiles/new/", {"model": "mlx-community/Qwen3-4B-4bit"}).content.decode()
    assert 'name="name" value="qwen3-4b-4bit"' in html
    make_profile(name="qwen3-4b-4bit")
    html = user_client.get("/profiles/new/", {"model": "mlx-community/Qwen3-4B-4bit"}).content.decode()
    assert 'name="name" value="qwen3-4b-4bit-2"' in html


def test_port_check_says_a_null_character_is_not_a_port(user_client: Client) -> None:
    response = user_client.get("/profiles/check/port/", {"port": "80\x0080"}, headers=HTMX)
    assert response.status_code == 200
    assert "The port must be a whole number." in response.content.decode()


def test_model_check_says_what_is_wrong_with_a_null_character(admin_client: Client) -> None:
    response = admin_client.get("/profiles/check/model/", {"model": "mlx-community/a\x00b"}, headers=HTMX)
    assert response.status_code == 200
    assert "Null characters are not allowed" in response.content.decode()


def test_the_forms_help_shows_code_not_backticks(user_client: Client) -> None:
    html = user_client.get("/profiles/new/").content.decode()
    helps = re.findall(r'<small class="muted" id="id_\w+_helptext">(.*?)</small>', html, re.S)
    assert helps and not any("`" in text for text in helps), [t for t in helps if "`" in t]
    assert "may send as <code>model</code> to /v1/" in html


def test_the_profile_page_says_when_the_server_starts_with_the_supervisor(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """Not a bare "No": the supervisor starts again every server that was running when it stopped."""
    profile = make_profile(name="tiny", port=9311)
    html = user_client.get(f"/profiles/{profile.pk}/").content.decode()
    row = html.split("Start with the supervisor</dt>")[1].split("</dd>")[0]
    assert "Only if it was running when the supervisor stopped" in row
    ServerProfile.objects.filter(pk=profile.pk).update(auto_start=True)
    row = user_client.get(f"/profiles/{profile.pk}/").content.decode().split("Start with the supervisor</dt>")[1]
    assert row.split("</dd>")[0].endswith("Yes, every time")
