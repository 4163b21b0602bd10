"""The profile pages in a real Chromium: create through the form (seeing the suggested port and
the as-you-type checks), edit, duplicate, delete, and a refused delete."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from conftest import browser_login, hidden_sideways, screenshot
from profiles.models import ServerProfile
from profiles.tests.test_ports import _unused_port_block
from servers.models import Server

pytestmark = [pytest.mark.browser]


def test_profile_pages(
    live_server: Any,
    page: Any,
    transactional_db: Any,
    make_user: Callable[..., User],
    tiny_model: Path,
    qwen3_folder: Path,
    settings: Any,
    listening_socket: socket.socket,
) -> None:
    base = _unused_port_block(10)
    settings.MLXM_PORT_BASE = base
    settings.MLXM_MODEL_DIRS = [tiny_model.parent, qwen3_folder.parent]  # where a member may point profiles
    user = make_user("owner@example.com")
    browser_login(page, live_server.url, user.email)
    page.goto(f"{live_server.url}/profiles/")
    expect(page.get_by_text("No profiles yet")).to_be_visible()

    # Create: the form comes with the next free port filled in.
    page.get_by_role("button", name="New profile").click()
    expect(page.locator("h1")).to_have_text("New profile")
    expect(page.locator("input[name=port]")).to_have_value(str(base))
    page.fill("input[name=name]", "Tiny chat")
    page.fill("input[name=model]", str(qwen3_folder))
    expect(page.locator("#model-check")).to_contain_text("qwen3")
    expect(page.locator("#model-check")).to_contain_text("40,960 tokens")
    expect(page.locator("#model-check")).to_contain_text("enable_thinking")
    page.fill("input[name=temperature]", "1.2")
    page.get_by_role("button", name="Fill in empty fields").click()
    expect(page.locator("input[name=temperature]")).to_have_value("1.2")  # typed: kept
    expect(page.locator("input[name=top_k]")).to_have_value("20")
    expect(page.locator("textarea[name=chat_template_args]")).to_have_value('{"enable_thinking": false}')
    page.fill("input[name=model]", str(tiny_model))
    expect(page.locator("#model-check")).to_contain_text("llama")
    held = listening_socket.getsockname()[1]
    page.fill("input[name=port]", str(held))
    expect(page.locator("#port-status")).to_contain_text(f"PID {os.getpid()}")
    page.fill("input[name=port]", str(base))
    expect(page.locator("#port-status")).to_contain_text(f"Port {base} is free.")
    screenshot(page, "profiles-new-form")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator(".message")).to_contain_text("Profile “Tiny chat” created.")
    expect(page.locator("#command-line")).to_contain_text(f"--port {base}")
    expect(page.locator("#command-line")).to_contain_text("--temp 1.2")
    screenshot(page, "profiles-detail")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-command")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("#command-line").text_content()
    profile = ServerProfile.objects.get(name="Tiny chat")
    assert profile.created_by == user and profile.chat_template_args == {"enable_thinking": False}

    # Edit.
    page.get_by_role("button", name="Edit").click()
    page.fill("input[name=port]", str(base + 9))
    page.fill("input[name=port]", str(base))  # its own port: not "taken by another profile"
    expect(page.locator("#port-status")).to_contain_text(f"Port {base} is free.")
    page.fill("input[name=temperature]", "0.6")
    page.fill("input[name=port]", "80")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#id_port_errors")).to_contain_text("at least 1024")
    screenshot(page, "profiles-edit-error")
    page.fill("input[name=port]", str(base))
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#command-line")).to_contain_text("--temp 0.6")

    # Duplicate: "(copy)", the next port, auto-start off.
    page.get_by_role("button", name="Duplicate").click()
    expect(page.locator("h1")).to_contain_text("Tiny chat (copy)")
    copy = ServerProfile.objects.get(name="Tiny chat (copy)")
    assert copy.port > base and not copy.auto_start
    expect(page.locator("#command-line")).to_contain_text(f"--port {copy.port}")

    # Delete the copy (the page asks first).
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".message")).to_contain_text("Profile “Tiny chat (copy)” deleted.")
    expect(page.locator("table")).not_to_contain_text("(copy)")
    screenshot(page, "profiles-list")

    # A running server's profile cannot be deleted.
    Server.objects.create(profile=profile, desired_state="running", state="running")
    page.goto(f"{live_server.url}/profiles/{profile.pk}/")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator(".message")).to_contain_text("cannot be deleted while its server is running")
    assert ServerProfile.objects.filter(pk=profile.pk).exists()
    page.goto(f"{live_server.url}/profiles/")
    expect(page.locator("table .badge.state-running")).to_have_text("running")

    # A phone-width look at the list and the form.
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "profiles-list-phone")
    hidden = hidden_sideways(page, ".profile-table")  # one card per profile, its model path included
    assert hidden <= 0, f"the profiles table is {hidden}px wider than a phone's screen"
    page.goto(f"{live_server.url}/profiles/{profile.pk}/edit/")
    expect(page.locator("#model-check")).to_contain_text("llama")
    other = ServerProfile.objects.create(name="Other", model="mlx-community/x", port=base + 8)
    page.fill("input[name=port]", str(other.port))
    expect(page.locator("#port-status")).to_contain_text("already used by the profile “Other”")
    screenshot(page, "profiles-edit-phone")
