"""Fixtures shared by every app's tests: users and clients, the tiny model, a real browser."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User, UserStatus

PASSWORD = "correct-horse-battery-42"
ARTIFACTS = Path(__file__).resolve().parent / "test-artifacts"
CHROMIUM = os.environ.get("MLXM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """Tests render templates without running collectstatic first."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Every test starts with an empty cache, and a gateway that remembers nothing and has nothing
    left to write: ids repeat between tests, cached answers must not."""
    from django.core.cache import cache

    from gateway.directory import directory
    from gateway.limits.gate import caller_limits_forget
    from gateway.recorder import recorder

    cache.clear()
    directory.forget()
    recorder.discard()
    caller_limits_forget()
    yield


@pytest.fixture(autouse=True)
def _no_server_logs_left() -> None:
    """Every test starts without server logs: profile ids repeat between tests (which share their
    worker's data directory), and a log an earlier test left behind is not this test's server's."""
    from django.conf import settings

    for path in Path(settings.MLXM_LOG_DIR).glob("server-*.log*"):
        path.unlink(missing_ok=True)


@pytest.fixture
def make_user(db: Any) -> Callable[..., User]:
    counter = iter(range(1, 10_000))

    def make(
        email: str | None = None, *, status: str = UserStatus.APPROVED, admin: bool = False, password: str = PASSWORD
    ) -> User:
        email = email or f"user{next(counter)}@example.com"
        user = User.objects.create_user(
            email=email, password=password, status=status, is_staff=admin, is_superuser=admin
        )
        return user

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    return make_user("admin@example.com", admin=True)


@pytest.fixture
def approved_user(make_user: Callable[..., User]) -> User:
    return make_user("alice@example.com")


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user, backend="accounts.backends.EmailBackend")
    return client


@pytest.fixture
def user_client(approved_user: User) -> Client:
    client = Client()
    client.force_login(approved_user, backend="accounts.backends.EmailBackend")
    return client


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLX model folder (random weights, a few thousand parameters) that mlx_lm.server loads."""
    from testing.tinymodel import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_vlm_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real model folders for mlx_vlm.server (testing/tinyvlm.py): `vision` (a Qwen2-VL),
    `embeddings` (a BERT encoder), `rerank` (a BERT cross-encoder) and `broken` (a vision tower
    that does not match its weights)."""
    from testing.tinyvlm import make_tiny_embedder, make_tiny_reranker, make_tiny_vlm

    root = tmp_path_factory.mktemp("tiny-vlm")
    return {
        "vision": make_tiny_vlm(root / "tiny-qwen2-vl"),
        "embeddings": make_tiny_embedder(root / "tiny-bert"),
        "rerank": make_tiny_reranker(root / "tiny-bert-reranker"),
        "broken": make_tiny_vlm(root / "broken-qwen2-vl", broken=True),
    }


@pytest.fixture(scope="session")
def scripted_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Makes (once per script) a model folder whose answers are scripted (testing/scriptedmodel.py):
    `scripted_model(ToolCall("Bash", {"command": "..."}), answer="...")`."""
    from testing.scriptedmodel import DEFAULT_ANSWER, ToolCall, make_scripted_model

    made: dict[tuple[str, str, bool], Path] = {}

    def make(call: ToolCall | None = None, answer: str = DEFAULT_ANSWER, unprompted: bool = False) -> Path:
        script = (call.json() if call else "", answer, unprompted)
        if script not in made:
            folder = tmp_path_factory.mktemp("scripted")
            made[script] = make_scripted_model(folder, call=call, answer=answer, unprompted=unprompted)
        return made[script]

    return make


# --- the hub stand-in ---


@pytest.fixture(scope="session")
def hub_stub(tiny_model: Path) -> Iterator[Any]:
    """The Hugging Face Hub stand-in (testing/hubstub.py) on the port HF_ENDPOINT points at,
    serving the tiny model and a few models with big declared sizes."""
    from testing.hubstub import HubStub, standard_repos

    hub = HubStub(port=int(os.environ["MLXM_TEST_HUB_PORT"])).start()
    for repo in standard_repos(tiny_model):
        hub.add(repo)
    yield hub
    hub.stop()


@pytest.fixture
def hub(hub_stub: Any) -> Iterator[Any]:
    """The stand-in with its switches (slow, drop, down) reset before and after the test."""
    hub_stub.reset()
    yield hub_stub
    hub_stub.reset()


# --- the supervisor ---


@pytest.fixture
def supervisor_process(transactional_db: Any, tmp_path: Path) -> Iterator[Any]:
    """Start real `manage.py runsupervisor` processes on the test database and data directory:
    `supervisor_process.start()` returns the Popen once its heartbeat is in. Teardown stops every
    supervisor started and kills any model server left behind."""
    from testing.supervisor import SupervisorProcesses

    runner = SupervisorProcesses(tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Any]:
    """A gunicorn (testing/web.py) on the test database, not started yet; ended after the test."""
    from testing.web import WebServer

    web = WebServer(log_path=tmp_path / "gunicorn.log")
    try:
        yield web
    finally:
        web.stop()


# --- PostgreSQL ---


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """A real PostgreSQL cluster (testing/postgres.py): the one `python -m testing.postgres run`
    started for this run, else a throwaway one started now and removed at the end. Fails (never
    skips) when PostgreSQL is not installed. Tests that stop it use `PostgresCluster` themselves."""
    from testing.postgres import PostgresCluster, PostgresMissing, attached

    shared = attached()
    if shared is not None:
        yield shared
        return
    try:
        cluster = PostgresCluster().start()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    try:
        yield cluster
    finally:
        cluster.destroy()


# --- the browser ---


@pytest.fixture(scope="session")
def browser_instance() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@contextlib.contextmanager
def browser_page(browser: Any, request: pytest.FixtureRequest, who: str = "") -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies: one person); a screenshot is kept in
    test-artifacts/ if the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        if call_failed(request):
            screenshot(page, f"FAILED-{request.node.name}{who}")
        context.close()


def call_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test's own call (not its setup) failed; set by pytest_runtest_makereport below."""
    report = getattr(request.node, "rep_call", None)
    return bool(report is not None and report.failed)


@pytest.fixture
def page(browser_instance: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    with browser_page(browser_instance, request) as page:
        yield page


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ (kept by CI, looked at by people)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshots(page: Any, name: str) -> None:
    """The page at 1280 and 390 px wide, light and dark: `name`-<width>-<scheme>.png in test-artifacts/."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            screenshot(page, f"{name}-{width}-{scheme}")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 900})


HIDDEN_SIDEWAYS_JS = """sel => {
  const box = document.querySelector(sel).parentElement;
  const edge = box.getBoundingClientRect().right;
  let past = box.scrollWidth - box.clientWidth;
  for (const el of box.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) past = Math.max(past, r.right - edge);
  }
  return past;
}"""


# Finite CSS transitions and animations ended: a details marker turning as it opens (Pico rotates it
# for 0.2 s) sticks out of its box mid-turn, by 2-3 px on the users page, which is not the layout.
SETTLED_JS = """() => Promise.all(document.getAnimations()
  .filter(a => a.effect && a.effect.getComputedTiming().iterations !== Infinity)
  .map(a => a.finished.catch(() => null)))"""


def hidden_sideways(page: Any, selector: str) -> int:
    """How many pixels of the first `selector`'s scrolling parent (`.table-wrap` and the like) are
    hidden past its right edge, its own scrolling or any element inside sticking out: more than 0
    means a phone cannot read all of it. One pixel is forgiven, as in e2e/test_layout.py: sub-pixel
    layout rounds to it now and then (seen in CI on a table that fits)."""
    page.evaluate(SETTLED_JS)
    return max(int(page.evaluate(HIDDEN_SIDEWAYS_JS, selector)) - 1, 0)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def browser_login(page: Any, live_server_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{live_server_url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


# Fixtures that start a real part, and the marker each test using them gets (make check leaves
# these out): marked by what the test uses, so no one has to remember.
REAL_PART_MARKERS = {
    "tiny_model": "mlx",
    "scripted_model": "mlx",
    "tiny_vlm_models": "mlx",
    "supervisor_process": "mlx",
    "browser_instance": "browser",
    "postgres_cluster": "debian",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in REAL_PART_MARKERS.items():
            if fixture in used:
                item.add_marker(marker)
