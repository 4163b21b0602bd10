"""The whole app as `make run` serves it (gunicorn + runsupervisor under honcho, testing/stack.py),
for browser tests that go through every part, and helpers to look for its model servers."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import expect

from accounts.tests.test_browser import _register as register
from conftest import browser_page, call_failed
from testing.net import free_port
from testing.stack import Stack


def stack_model_servers(stack: Stack) -> list[psutil.Process]:
    """The `mlx_lm.server` processes started for this stack (they inherit its MLXM_DATA_DIR)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            ours = "mlx_lm" in cmdline and process.environ().get("MLXM_DATA_DIR") == str(stack.data_dir)
            if ours and "server" in cmdline:
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def stack(hub: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A fresh copy of the app on its own port, data directory, database and Hugging Face cache;
    HF_ENDPOINT (inherited) points at the hub stand-in, which `hub` serves. Stopped with Ctrl-C
    at teardown (a test may stop it earlier); a model server it left behind is killed."""
    root = tmp_path / "stack"
    stack = Stack(
        root,
        extra_env={
            "HF_HOME": str(root / "hf-home"),
            # Profiles get ports from a free range, not the 8080 of a person's own `make run`.
            "MLXM_PORT_BASE": str(free_port()),
        },
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        if call_failed(request):  # what gunicorn and the supervisor said, in the failure's report
            print(f"--- the stack's output ({stack.log_path}), last part ---\n{stack.log_text()[-6000:]}")
        for process in stack_model_servers(stack):
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def second_page(browser_instance: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a second browser context: another person with their own cookies."""
    with browser_page(browser_instance, request, "-second-person") as page:
        yield page


def register_and_create_profile(page: Any, base: str, model: Path, *, name: str = "") -> int:
    """The first person registers (becoming the administrator) and makes a profile through the
    form on `model`'s folder: with `name`, or keeping the one the form suggests. Returns its id."""
    register(page, base, "owner@example.com")
    page.wait_for_url("**/servers/")
    page.goto(f"{base}/profiles/new/")
    if name:
        page.fill("input[name=name]", name)
    page.fill("input[name=model]", str(model))
    if not name:
        assert page.input_value("input[name=name]") == model.name  # suggested from the model
    expect(page.locator("#model-check")).to_contain_text("llama")
    page.get_by_role("button", name="Create profile").click()
    expect(page.locator(".message")).to_contain_text("created")
    return int(re.search(r"/profiles/(\d+)/", page.url)[1])  # type: ignore[index]
