"""Local model folders in real Chromium: an administrator allows a folder on the Models page, its
models are listed there (and so is a folder a profile serves from anywhere), and a member who
names a path outside the allowed folders is told once, plainly, what to do."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User
from audit.models import AuditRecord
from conftest import browser_login, hidden_sideways, screenshots
from library.models import ModelFolder
from profiles.models import ServerProfile

pytestmark = pytest.mark.browser


def test_an_administrator_allows_a_folder_and_its_models_are_listed(
    live_server: Any,
    page: Any,
    transactional_db: Any,
    make_user: Callable[..., User],
    tiny_model: Path,
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.MLXM_MODEL_DIRS = []
    base = live_server.url
    models = tmp_path / "models"
    shutil.copytree(tiny_model, models / "tiny-llama")
    elsewhere = tmp_path / "elsewhere" / "served"
    shutil.copytree(tiny_model, elsewhere)
    admin = make_user("admin@example.com", admin=True)
    member = make_user("member@example.com")
    ServerProfile.objects.create(name="served", model=str(elsewhere), port=9402)  # an administrator's, any path

    browser_login(page, base, admin.email)
    page.goto(f"{base}/models/")
    listed = page.locator("#local-models")
    expect(listed.locator(f'tr[data-model="{elsewhere}"]')).to_contain_text("served")  # a profile's folder
    page.fill("#model-folders input[name=path]", "relative/path")
    page.click("#model-folders button:has-text('Allow')")
    expect(page.locator("#model-folders .errorlist")).to_contain_text("absolute path")
    page.fill("#model-folders input[name=path]", str(models))
    page.click("#model-folders button:has-text('Allow')")
    expect(page.locator(f'#model-folders li[data-folder="{models}"]')).to_be_visible()
    row = listed.locator(f'tr[data-model="{models / "tiny-llama"}"]')
    expect(row).to_contain_text("folder")
    expect(row.get_by_role("button", name="New profile")).to_have_attribute(
        "href", f"/profiles/new/?model={str(models / 'tiny-llama').replace('/', '%2F')}"
    )
    assert ModelFolder.objects.get().path == str(models)
    assert AuditRecord.objects.filter(action="allow folder", subject=str(models)).exists()
    screenshots(page, "models-local-folders")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        assert hidden_sideways(page, ".local-table") <= 0, f"the local models table is cut at {width} px"

    page.context.clear_cookies()
    browser_login(page, base, member.email)
    page.goto(f"{base}/models/")
    assert page.locator("#model-folders form").count() == 0, "only administrators change the folders"
    page.goto(f"{base}/profiles/new/")
    page.fill("input[name=name]", "mine")
    page.fill("input[name=model]", str(elsewhere))
    expect(page.locator("#model-check")).to_contain_text("ask one to allow this folder")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator("#id_model_errors")).to_contain_text("model folders an administrator allowed")
    assert page.locator("main").inner_text().count("ask one to allow this folder") == 1, "said once"
    screenshots(page, "profile-form-folder-not-allowed")
    page.fill("input[name=model]", str(models / "tiny-llama"))  # inside the allowed folder: fine
    expect(page.locator("#model-check")).to_contain_text("llama")
