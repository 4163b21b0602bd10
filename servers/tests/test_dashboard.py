"""The servers dashboard: the polled partial's query count, the buttons, the banner, empty states."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psutil
import pytest
from django.test import Client
from django.utils import timezone

from core.formatting import human_bytes
from library.models import Download, DownloadState
from nodes.models import Node
from profiles.models import ServerProfile
from servers.chat import CHAT_MAX_TOKENS
from servers.models import DesiredState, Server, ServerEvent, ServerState, SystemSample
from servers.tests.factories import add_samples, set_server
from testing.nodes import set_node

HTMX = {"HX-Request": "true"}
# session, user, the nodes (with their heartbeat and memory as last sampled), profiles joined with
# their servers, the samples aggregated per minute, the gateway's three for its card section (the newest usage record's id, then, unless that and the
# minute are unchanged since the last poll: requests in the last hour, the last tokens/s),
# and a member's permissions (2, once) for the Stop/Restart buttons.
PARTIAL_QUERIES = 10

OTHER_STATES = [ServerState.STOPPED, ServerState.FATAL, ServerState.BACKOFF, ServerState.STARTING, ServerState.STOPPING]


def seed(make_profile: Callable[..., ServerProfile], profiles: int, running: int) -> list[ServerProfile]:
    set_node(memory_total=64 * 1000**3, memory_available=40 * 1000**3)  # as its supervisor samples it
    made = [make_profile() for _ in range(profiles)]
    for i, profile in enumerate(made):
        if i < running:
            add_samples(set_server(profile, ServerState.RUNNING), count=120, every=timedelta(seconds=30))
        elif i % 3:  # some never had a Server row at all
            set_server(profile, OTHER_STATES[i % len(OTHER_STATES)], last_error="boom" if i % 2 else "")
    return made


@pytest.mark.parametrize(("profiles", "running"), [(50, 20), (5, 2)])
def test_partial_runs_a_fixed_number_of_queries(
    user_client: Client,
    make_profile: Callable[..., ServerProfile],
    django_assert_num_queries: Any,
    profiles: int,
    running: int,
) -> None:
    seed(make_profile, profiles, running)
    with django_assert_num_queries(PARTIAL_QUERIES):
        response = user_client.get("/servers/", headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html  # the partial, not the page
    assert html.count('class="server-card"') == profiles
    assert html.count('data-state="running"') == running
    assert html.count("<polyline") == 2 * running  # memory and CPU sparklines of the running ones


def test_the_next_poll_reuses_the_sparklines_but_reads_the_cards_afresh(
    user_client: Client, make_profile: Callable[..., ServerProfile], django_assert_max_num_queries: Any
) -> None:
    seed(make_profile, 5, 2)
    user_client.get("/servers/", headers=HTMX)
    Server.objects.filter(state=ServerState.RUNNING).update(cpu_percent=77.0)
    # No samples query (the gateway's figures are reused too, unless a new minute began meanwhile).
    with django_assert_max_num_queries(PARTIAL_QUERIES - 1):
        html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert html.count("77 %") == 2, "the cards' figures are fresh"
    assert html.count("<polyline") == 4, "the sparklines are still drawn"


def test_a_probe_or_sample_refreshes_figures_without_rendering_the_card_again(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """Health, memory and CPU change every few seconds: they are filled into the kept card HTML;
    the card template runs again only when the card changes shape (here: its state)."""
    seed(make_profile, 3, 1)
    user_client.get("/servers/", headers=HTMX)
    Server.objects.filter(state=ServerState.RUNNING).update(last_health_ms=4321.0, rss_bytes=7 * 2**30, pid=424242)
    response = user_client.get("/servers/", headers=HTMX)
    html = response.content.decode()
    assert "4321 ms" in html and human_bytes(7 * 2**30) in html and "424242" in html
    assert "servers/_card.html" not in [t.name for t in response.templates], "rendered again for new figures"
    assert "card-slot-" not in html, "a slot was left unfilled"
    assert html.count('name="csrfmiddlewaretoken"') == html.count("<form")
    Server.objects.filter(state=ServerState.RUNNING).update(state=ServerState.UNHEALTHY)
    response = user_client.get("/servers/", headers=HTMX)
    assert "servers/_card.html" in [t.name for t in response.templates]
    assert 'data-state="unhealthy"' in response.content.decode()


VERSION = re.compile(r'id="live-version" name="v" value="([^"]*)"')


def poll(client: Client, version: str = "") -> tuple[Any, str, str]:
    """One poll as the page sends it (the version its last answer gave): (response, html, new version)."""
    response = client.get("/servers/", {"v": version} if version else {}, headers=HTMX)
    html = response.content.decode()
    found = VERSION.search(html)
    assert response.status_code == 200 and found, "every answer carries the version to send back"
    return response, html, found.group(1)


def test_a_poll_that_changes_nothing_sends_no_card(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    seed(make_profile, 5, 2)
    _, full, version = poll(user_client)
    assert full.count('class="server-card"') == 5 and 'id="server-live"' in full
    response, html, again = poll(user_client, version)
    assert response["HX-Reswap"] == "none", "all of it is out of band"
    assert "<article" not in html and 'hx-swap-oob="innerHTML"' not in html
    assert html.count('class="node-summary"') == 1 and 'hx-swap-oob="true"' in html  # the memory bar, afresh
    assert again == version
    assert len(html) < len(full) / 3


def test_a_poll_sends_the_figures_that_changed_and_only_those_cards(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    made = seed(make_profile, 5, 2)
    _, _, version = poll(user_client)
    Server.objects.filter(profile=made[0]).update(rss_bytes=7 * 2**30, last_health_ms=4321.0)
    _, html, version = poll(user_client, version)
    assert "<article" not in html, "a new figure does not send the whole card"
    assert f'<span id="server-card-{made[0].pk}-rss" hx-swap-oob="innerHTML">{human_bytes(7 * 2**30)}</span>' in html
    assert f'<span id="server-card-{made[0].pk}-health" hx-swap-oob="innerHTML">4321 ms</span>' in html
    assert f"server-card-{made[1].pk}-" not in html, "the other running card did not change"
    Server.objects.filter(profile=made[1]).update(state=ServerState.UNHEALTHY)
    _, html, _ = poll(user_client, version)
    assert html.count("<article") == 1, "a card whose state changed is sent whole, alone"
    card = re.search(
        r'<article class="server-card" id="server-card-(\d+)" data-state="(\w+)" hx-swap-oob="true">', html
    )
    assert card and card.groups() == (str(made[1].pk), "unhealthy")
    assert html.count('name="csrfmiddlewaretoken"') == html.count("<form")


def test_a_new_card_or_an_unreadable_version_gets_the_whole_live_part(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    seed(make_profile, 3, 1)
    _, _, version = poll(user_client)
    make_profile()
    response, html, _ = poll(user_client, version)
    assert "HX-Reswap" not in response and html.count('class="server-card"') == 4 and 'id="server-live"' in html
    for garbage in (
        "x",
        version + ".zz",
        version.replace("~", "!"),
        version + ".1~" + "A" * 8 + "~" + "A" * 9,
        "a" * 50_000,
    ):
        response, html, _ = poll(user_client, garbage)
        assert html.count('class="server-card"') == 4, f"{garbage[:20]!r} answered {response.status_code}"


def test_a_card_gives_a_gateway_as_its_base_url_never_the_servers_port(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """Here: this app's gateway (the model server's own port takes no key). On another Mac, whose
    server listens on that Mac's loopback: that node's gateway (its MLXM_NODE_URL)."""
    here = make_profile("here", port=18001)
    there = make_profile("there", port=18002)
    far = make_profile("far", port=18003)
    ServerProfile.objects.filter(pk=there.pk).update(node=set_node("b", url="http://studio.local:8000/"))
    ServerProfile.objects.filter(pk=far.pk).update(node=set_node("c", url=""))
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    card = {p.name: html.split(f'id="server-card-{p.pk}"')[1].split("</article>")[0] for p in (here, there, far)}
    assert 'data-copy="http://testserver/v1"' in card["here"] and "18001" not in card["here"]
    assert 'data-copy="http://studio.local:8000/v1"' in card["there"] and "18002" not in card["there"]
    assert "through c&#x27;s gateway (its MLXM_NODE_URL is not set)" in card["far"] and "18003" not in card["far"]


def test_page_shows_card_facts_and_sparklines(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile("qwen", model="mlx-community/Qwen3-4B-4bit", port=8123)
    server = set_server(profile, ServerState.RUNNING, rss_bytes=2 * 1000**3, cpu_percent=33.0, restart_count=2)
    add_samples(server)
    html = user_client.get("/servers/").content.decode()
    assert 'data-copy="http://testserver/v1"' in html  # one click copies the gateway's base URL
    assert "mlx-community/Qwen3-4B-4bit" in html
    assert f"{server.pid}" in html
    assert "2.0 GB" in html
    assert "33 %" in html
    assert "42 min" in html  # uptime
    assert "4 ms" in html  # last health latency (3.5 rounds to 4)
    assert re.search(r'server-restarts">2<', html)
    points = re.findall(r'<polyline points="([^"]+)"', html)
    assert len(points) == 2 and all(len(p.split()) > 30 for p in points)


def test_failure_reason_is_on_the_badge_card(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile("broken")
    set_server(
        profile, ServerState.FATAL, desired_state=DesiredState.RUNNING, last_error="model not found", last_exit_code=1
    )
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "model not found (exit code 1)" in html
    assert 'class="badge state-fatal server-state"' in html


def test_a_starting_server_says_it_is_loading_and_for_how_long(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    loading = make_profile("loading")
    set_server(loading, ServerState.STARTING, started_at=timezone.now() - timedelta(seconds=42))
    running = make_profile("answering")
    set_server(running, ServerState.RUNNING, started_at=timezone.now() - timedelta(seconds=42))
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert html.count("Loading the model") == 1
    card = html[html.index(f'id="server-card-{loading.pk}"') :]
    assert re.search(r"Loading the model: 4[2-9] s so far", card[: card.index("</article>")])


def test_a_model_gone_from_the_machine_offers_the_download_again(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile("gone", model="mlx-community/Deleted-Model-4bit")  # not in this test's cache
    refusal = (
        "The model mlx-community/Deleted-Model-4bit is not on this machine. Download it from the Models page first"
    )
    set_server(profile, ServerState.FATAL, desired_state=DesiredState.RUNNING, last_error=refusal)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    card = html[html.index(f'id="server-card-{profile.pk}"') :]
    assert "btn-download-again" in card and 'value="mlx-community/Deleted-Model-4bit"' in card
    assert "exit code" not in card
    assert f'name="node" value="{profile.node.name}"' in card
    # On another Mac (reached by its URL): the card is kept rendered between polls, and a renamed
    # node is not left behind in its form.
    studio = set_node("studio", url="http://studio.local:8000/")
    ServerProfile.objects.filter(pk=profile.pk).update(node=studio)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert 'name="node" value="studio"' in html[html.index(f'id="server-card-{profile.pk}"') :]
    Node.objects.filter(pk=studio.pk).update(name="studio-2")
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert 'name="node" value="studio-2"' in html[html.index(f'id="server-card-{profile.pk}"') :]
    # A stopped server is not offered a Restart; a failed one is not offered a download of a folder.
    folder = make_profile("folder", model="/nowhere/model")
    set_server(folder, ServerState.FATAL, last_error="The model folder /nowhere/model is not on this machine")
    stopped = make_profile("idle")
    set_server(stopped, ServerState.STOPPED)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "btn-download-again" not in html[html.index(f'id="server-card-{folder.pk}"') :].split("</article>")[0]
    assert "btn-restart" not in html[html.index(f'id="server-card-{stopped.pk}"') :].split("</article>")[0]


def test_polls_fast_while_a_server_is_transient_and_slow_otherwise(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile()
    set_server(profile, ServerState.RUNNING)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert 'data-poll="5"' in html and 'hx-trigger="every 5s,' in html
    set_server(profile, ServerState.STARTING)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert 'data-poll="1"' in html and 'hx-trigger="every 1s,' in html
    # An intent the supervisor has not acted on yet also polls fast.
    set_server(profile, ServerState.STOPPED, desired_state=DesiredState.RUNNING)
    assert 'data-poll="1"' in user_client.get("/servers/", headers=HTMX).content.decode()


def test_banner_when_heartbeat_is_missing_or_stale(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    make_profile()
    html = user_client.get("/servers/").content.decode()
    assert "supervisor-banner" in html and "python manage.py runsupervisor" in html and "make run" in html
    set_node(heartbeat_at=timezone.now() - timedelta(minutes=5))
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "The supervisor is not running" in html
    set_node(heartbeat_at=timezone.now())
    assert "supervisor-banner" not in user_client.get("/servers/", headers=HTMX).content.decode()


def test_banner_and_system_page_agree_after_a_clean_stop(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """A fresh heartbeat followed by a clean stop: not running, on both pages, at once."""
    make_profile()
    now = timezone.now()
    set_node(heartbeat_at=now, started_at=now - timedelta(hours=1), stopped_at=now)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "The supervisor is not running" in html and "It stopped cleanly." in html
    system = user_client.get("/system/").content.decode()
    assert re.search(r'id="supervisor-state" class="badge badge-bad">not running', system)
    set_node(heartbeat_at=timezone.now() + timedelta(seconds=1))  # started again
    assert "supervisor-banner" not in user_client.get("/servers/", headers=HTMX).content.decode()
    assert 'id="supervisor-state" class="badge badge-ok">running' in user_client.get("/system/").content.decode()


def test_memory_bar_counts_our_servers(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    set_server(make_profile(), ServerState.RUNNING, rss_bytes=300 * 1000**2)
    set_server(make_profile(), ServerState.RUNNING, rss_bytes=200 * 1000**2)
    set_server(make_profile(), ServerState.STOPPED, rss_bytes=900 * 1024**2)  # stale figure of a stopped one
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "Our servers 500.0\xa0MB" in html
    assert re.search(r'class="mem-servers" data-width="[0-9.]+"', html)  # sized by site.js (CSP: no style attribute)


def test_memory_bar_reads_the_newest_system_sample(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """The poll reads what the supervisor sampled, not psutil; psutil only before any sample."""
    make_profile()
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    total = human_bytes(psutil.virtual_memory().total).replace(" ", "\xa0")
    assert f"of {total}" in html  # no sample yet: asked of psutil
    now = timezone.now()
    SystemSample.objects.create(taken_at=now - timedelta(seconds=10), memory_total=8 * 1000**3, memory_available=1)
    SystemSample.objects.create(taken_at=now, memory_total=7 * 1000**3, memory_available=3 * 1000**3)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "Available 3.0\xa0GB" in html and "of 7.0\xa0GB" in html
    # A supervisor writes each sample on its node's row too: the poll reads it from there.
    set_node(memory_total=7 * 1000**3, memory_available=2 * 1000**3)
    html = user_client.get("/servers/", headers=HTMX).content.decode()
    assert "Available 2.0\xa0GB" in html and "of 7.0\xa0GB" in html


# --- buttons ---


def test_start_records_intent_and_returns_the_card(
    user_client: Client, approved_user: Any, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile("alpha")
    response = user_client.post(f"/servers/{profile.pk}/start/", headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith("<article") and f'id="server-card-{profile.pk}"' in html
    assert "Start requested for alpha." in html and "Start requested…" in html
    assert response["HX-Trigger"] == "servers-changed"
    server = Server.objects.get(profile=profile)
    assert server.desired_state == DesiredState.RUNNING
    event = ServerEvent.objects.get(server=server)
    assert (event.action, event.by, event.kind) == ("start", approved_user, ServerEvent.Kind.ACTION)


def test_stop_and_restart_record_intent(admin_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile()
    set_server(profile, ServerState.RUNNING)
    html = admin_client.post(f"/servers/{profile.pk}/restart/", headers=HTMX).content.decode()
    assert "Restart requested" in html
    assert Server.objects.get(profile=profile).restart_requested == 1
    html = admin_client.post(f"/servers/{profile.pk}/stop/", headers=HTMX).content.decode()
    assert "Stop requested" in html
    assert Server.objects.get(profile=profile).desired_state == DesiredState.STOPPED
    assert list(ServerEvent.objects.values_list("action", flat=True)) == ["stop", "restart"]


def test_buttons_work_without_javascript(admin_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile("beta")
    response = admin_client.post(f"/servers/{profile.pk}/start/", {"next": f"/servers/{profile.pk}/"})
    assert response.status_code == 302 and response["Location"] == f"/servers/{profile.pk}/"
    assert "Start requested for beta." in admin_client.get(response["Location"]).content.decode()
    # An outside `next` is ignored.
    response = admin_client.post(f"/servers/{profile.pk}/restart/", {"next": "https://evil.example/"})
    assert response["Location"] == "/servers/"


def test_stopping_a_stopped_server_is_refused_politely(
    admin_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile("idle")
    set_server(profile, ServerState.STOPPED)
    response = admin_client.post(f"/servers/{profile.pk}/stop/", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "idle is not running, so there is nothing to stop." in html and "message-warning" in html
    assert "HX-Trigger" not in response
    response = admin_client.post(f"/servers/{profile.pk}/stop/", follow=True)
    assert "nothing to stop" in response.content.decode()
    assert not ServerEvent.objects.exists()


def test_fatal_server_can_be_started_again(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile()
    set_server(profile, ServerState.FATAL, desired_state=DesiredState.RUNNING, last_error="crashed 5 times")
    html = user_client.post(f"/servers/{profile.pk}/start/", headers=HTMX).content.decode()
    assert "Start requested" in html
    server = Server.objects.get(profile=profile)
    assert server.desired_state == DesiredState.RUNNING and server.restart_requested == 1


def test_actions_need_post_and_a_known_profile(user_client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile()
    assert user_client.get(f"/servers/{profile.pk}/start/").status_code == 405
    assert user_client.post("/servers/9999/start/").status_code == 404
    assert user_client.get("/servers/9999/").status_code == 404


def test_anonymous_is_sent_to_login(client: Client, make_profile: Callable[..., ServerProfile]) -> None:
    profile = make_profile()
    response = client.post(f"/servers/{profile.pk}/start/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Server.objects.exists()


# --- empty states ---


def test_empty_dashboard_says_find_a_model_first(user_client: Client) -> None:
    html = user_client.get("/servers/").content.decode()
    assert 'href="/models/search/"' in html and "Find a model" in html
    assert 'href="/profiles/new/"' in html


def test_empty_dashboard_with_a_model_says_create_a_profile(user_client: Client) -> None:
    Download.objects.create(repo_id="mlx-community/Tiny-4bit", state=DownloadState.COMPLETED)
    html = user_client.get("/servers/").content.decode()
    assert "Create a profile" in html and 'href="/models/search/"' not in html


# --- the server page ---


def test_server_page_shows_state_command_and_timeline(
    user_client: Client, approved_user: Any, make_profile: Callable[..., ServerProfile]
) -> None:
    profile = make_profile("gamma", model="mlx-community/Gamma-4bit", port=8555)
    server = set_server(
        profile, ServerState.BACKOFF, desired_state=DesiredState.RUNNING, last_exit_code=3, last_error="Killed"
    )
    ServerEvent.objects.create(
        server=server, kind=ServerEvent.Kind.ACTION, action="start", by=approved_user, cause="user"
    )
    ServerEvent.objects.create(
        server=server,
        kind=ServerEvent.Kind.TRANSITION,
        from_state="starting",
        to_state="backoff",
        cause="exit",
        exit_code=3,
        message="exited during start",
    )
    html = user_client.get(f"/servers/{profile.pk}/").content.decode()
    assert "-m mlx_lm server --model mlx-community/Gamma-4bit --host 127.0.0.1 --port 8555" in html
    assert "alice@example.com" in html and "<strong>Start</strong>" in html
    assert re.search(r"state-starting\">starting</span> → <span class=\"badge state-backoff\">backoff", html)
    assert "exited during start" in html and "Killed (exit code 3)" in html
    # The streamed chat asks for the server-side chat's cap; the gateway lowers it to the room left.
    assert f'data-model="{profile.name}" data-max-tokens="{CHAT_MAX_TOKENS}"' in html
    state = user_client.get(f"/servers/{profile.pk}/state/", headers=HTMX).content.decode()
    assert 'id="server-state"' in state and 'hx-swap-oob="true"' in state and "exited during start" in state


# --- the sparkline builder (shared with the System page) ---


def test_sparkline_points_scale_and_gaps() -> None:
    from servers.charts import sparkline_points

    assert sparkline_points([0, 50, 100], 100, 20, maximum=100) == "0.0,19.0 50.0,10.0 100.0,1.0"
    assert sparkline_points([None, 2, None, 4], 30, 10) == "10.0,5.0 30.0,1.0"  # gaps are skipped
    assert sparkline_points([200, 0], 10, 10, maximum=100) == "0.0,1.0 10.0,9.0"  # clipped at the top
    assert sparkline_points([3], 10, 10) == "0,1.0 10.0,1.0"
    assert sparkline_points([0, 0], 10, 10) == "0.0,9.0 10.0,9.0"
    assert sparkline_points([], 10, 10) == sparkline_points([None, None], 10, 10) == ""


def test_samples_are_one_point_per_minute_of_the_last_hour(make_profile: Callable[..., ServerProfile]) -> None:
    from servers.dashboard.data import CHART_BUCKETS, sample_series

    server = set_server(make_profile(), ServerState.RUNNING)
    add_samples(server, count=2 * 360, every=timedelta(seconds=10))  # two hours, one every 10 s
    series = sample_series([server.pk])[server.pk]
    known = [v for v in series.memory if v is not None]
    assert len(series.memory) == CHART_BUCKETS and len(known) >= CHART_BUCKETS - 1
    assert all(1e9 <= v < 1.1e9 for v in known) and all(0 <= v < 100 for v in series.cpu if v is not None)
    assert sample_series([]) == {}


def test_a_sparkline_needs_three_sampled_minutes() -> None:
    """One or two samples would draw a dot at the edge: the card says charts come later instead."""
    from servers.dashboard.data import CHART_BUCKETS, Series

    two = Series([None] * (CHART_BUCKETS - 2) + [1.0, 2.0], [None] * (CHART_BUCKETS - 2) + [5.0, 6.0])
    three = Series([None] * (CHART_BUCKETS - 3) + [1.0, 2.0, 3.0], [None] * (CHART_BUCKETS - 3) + [5.0, 6.0, 7.0])
    assert not two.has_data and three.has_data


@pytest.mark.django_db
def test_a_card_shows_the_on_demand_options_and_the_idle_clock(admin_client: Client) -> None:
    profile = ServerProfile.objects.create(
        name="ondemand", model="m", port=9321, on_demand=True, idle_minutes=10, keep_running=True
    )
    Server.objects.create(
        profile=profile,
        state=ServerState.RUNNING,
        desired_state="running",
        started_at=timezone.now() - timedelta(minutes=30),
        last_used_at=timezone.now() - timedelta(minutes=3, seconds=10),
    )
    html = admin_client.get("/servers/").content.decode()
    assert "Starts on first request · kept running · idle for 3 min, stops in 7 min" in html
    Server.objects.filter(profile=profile).update(in_flight=2)
    assert "answering 2 requests" in admin_client.get("/servers/").content.decode()


def test_a_version_too_long_for_a_url_is_not_sent() -> None:
    """Some 330 cards: the page then gets the whole live part at every poll, as before versions."""
    from servers.dashboard.render import (
        LIVE_FIGURES,
        VERSION_MAX_LENGTH,
        CardParts,
        RenderedCard,
        live_version,
        parse_version,
    )

    text = dict.fromkeys(LIVE_FIGURES, "1")
    cards = [RenderedCard(pk, CardParts(["<article>"], "shape"), text) for pk in range(1, 401)]
    assert len(live_version("A" * 8, cards[:300])) <= VERSION_MAX_LENGTH
    assert parse_version(live_version("A" * 8, cards[:300])) is not None
    assert live_version("A" * 8, cards) == ""


def test_a_new_csrf_secret_gets_the_whole_live_part(
    user_client: Client, make_profile: Callable[..., ServerProfile]
) -> None:
    """The cards' forms carry a token of the secret they were rendered with: signing in again (a new
    secret) must bring them anew, or their buttons would be refused."""
    seed(make_profile, 3, 1)
    _, _, version = poll(user_client)
    assert "<article" not in poll(user_client, version)[1]
    user_client.cookies["csrftoken"] = "N" * 32
    _, html, _ = poll(user_client, version)
    assert html.count('class="server-card"') == 3 and 'id="server-live"' in html


def test_the_banner_for_a_supervisor_never_run_ends_its_sentence_once(user_client: Client) -> None:
    html = user_client.get("/servers/").content.decode()
    assert re.search(r"The supervisor has never run here</strong>\. ", html), "one full stop, not '. .'"
