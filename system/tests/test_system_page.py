"""The System page with real numbers from this machine, and supervisor/server/download rows seeded
as the supervisor would write them."""

from __future__ import annotations

import platform
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib import metadata
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import memory as machine_memory
from core.formatting import human_bytes
from library.models import Download, DownloadState
from profiles.models import ServerProfile
from servers.charts import sparkline_points
from servers.models import Server, ServerState, SystemSample
from system.views import svg_area
from testing.nodes import set_node

GB = 1024**3


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def data_bytes(html: str, element_id: str) -> int:
    match = re.search(rf'data-bytes="(\d+)" id="{element_id}"', html)
    assert match, f"no #{element_id} in the page"
    return int(match.group(1))


def make_server(name: str, port: int, *, state: str, rss: int | None, pid: int | None = None) -> Server:
    profile = ServerProfile.objects.create(name=name, model="mlx-community/tiny", port=port)
    return Server.objects.create(profile=profile, state=state, rss_bytes=rss, pid=pid)


@pytest.mark.django_db
def test_memory_is_this_machines(admin_client: Client) -> None:
    html = admin_client.get("/system/").content.decode()
    vm = psutil.virtual_memory()
    assert data_bytes(html, "mem-total") == vm.total
    if sys.platform == "darwin":
        # macOS counts as Activity Monitor does, from vm_stat (its parsing is checked against
        # recorded vm_stat output below); the page shows that figure, not psutil's.
        mac = machine_memory.memory(platform_name="darwin")
        assert mac.source == "vm_stat and sysctl"
        assert abs(data_bytes(html, "mem-available") - mac.available) < 256 * 1024**2
        return
    # Memory moves between the request and this line; 256 MB is plenty on a quiet test machine.
    assert abs(data_bytes(html, "mem-available") - vm.available) < 256 * 1024**2
    assert abs(data_bytes(html, "mem-used") - (vm.total - vm.available)) < 256 * 1024**2
    assert data_bytes(html, "mem-swap") == pytest.approx(psutil.swap_memory().used, abs=64 * 1024**2)
    # No MLX figure on Linux's CPU build: the page says it shows three quarters of RAM instead.
    assert machine_memory.mlx_device_info().get("max_recommended_working_set_size") is None
    assert data_bytes(html, "mem-recommended") == int(vm.total * 0.75)
    assert "75% of RAM: MLX reports no recommended working set on this machine" in html


@pytest.mark.django_db
def test_versions_and_machine_facts(user_client: Client) -> None:
    html = user_client.get("/system/").content.decode()
    for name in ("mlx", "mlx-lm", "Django", "huggingface_hub"):
        assert f'data-package="{name}">{metadata.version(name)}<' in html
    assert sys.executable in html
    assert f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" in html
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert cpu and cpu.group(1).strip() in html
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)"?$', os_release, re.MULTILINE)
    assert f"{pretty.group(1) if pretty else platform.system()} (kernel {platform.release()})" in html


@pytest.mark.django_db
def test_hub_cache_size_is_measured_by_the_supervisor_and_free_disk_is_read(user_client: Client) -> None:
    from servers.supervisor.core import Policy, Supervisor
    from servers.supervisor.host import RealHost

    hub = Path(settings.HF_HUB_CACHE)
    blob = hub / "models--demo--tiny" / "blobs" / "abc"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"\1" * 3_000_000)
    html = user_client.get("/system/").content.decode()
    assert str(hub) in html and "not measured yet" in html
    assert abs(data_bytes(html, "disk-free") - shutil.disk_usage(hub).free) < 256 * 1024**2

    # The supervisor walks the cache (on its own clock); the page, polled or not, shows what it found.
    supervisor = Supervisor(host=RealHost(), policy=Policy.from_settings())
    supervisor.begin()
    supervisor.sample(supervisor.host.time(), {})
    size = data_bytes(user_client.get("/system/").content.decode(), "cache-size")
    assert 3_000_000 <= size < 3_000_000 + 1024**2
    (blob.parent / "def").write_bytes(b"\2" * 2_000_000)
    polled = user_client.get("/system/", headers={"HX-Request": "true"}).content.decode()
    assert data_bytes(polled, "cache-size") == size  # no walk in the request
    supervisor.sample(supervisor.host.time() + 61, {})
    assert data_bytes(user_client.get("/system/").content.decode(), "cache-size") >= 5_000_000


@pytest.mark.django_db
def test_supervisor_running_with_its_servers_and_downloads(user_client: Client) -> None:
    now = timezone.now()
    set_node(
        pid=31337,
        hostname="studio",
        started_at=now - timedelta(hours=2, minutes=5),
        heartbeat_at=now - timedelta(seconds=2),
    )
    make_server("Qwen small", 8101, state=ServerState.RUNNING, rss=3 * GB, pid=4001)
    make_server("Llama big", 8102, state=ServerState.STARTING, rss=1 * GB, pid=4002)
    make_server("Old one", 8103, state=ServerState.STOPPED, rss=5 * GB)
    Download.objects.create(
        repo_id="mlx-community/Fresh-4bit", state=DownloadState.DOWNLOADING, bytes_done=50, bytes_total=200
    )
    Download.objects.create(repo_id="mlx-community/Done-4bit", state=DownloadState.COMPLETED)

    html = user_client.get("/system/").content.decode()
    assert 'id="supervisor-pid">31337 on studio' in html
    assert "2\xa0hours, 5\xa0minutes" in html
    assert data_bytes(html, "mem-servers") == 4 * GB  # running + starting; the stopped one holds nothing
    assert "Qwen small" in html and "PID 4001" in html and "Llama big" in html
    assert "Old one" not in html
    assert "mlx-community/Fresh-4bit" in html and "25%" in html
    assert "mlx-community/Done-4bit" not in html


@pytest.mark.django_db
def test_a_stale_heartbeat_means_not_running_and_says_how_to_start(user_client: Client) -> None:
    now = timezone.now()
    set_node(pid=999, started_at=now - timedelta(hours=1), heartbeat_at=now - timedelta(minutes=3))
    html = user_client.get("/system/").content.decode()
    assert "not running" in html
    assert "heartbeat is stale" in html
    assert "python manage.py runsupervisor" in html
    assert 'id="supervisor-pid"' not in html

    set_node(heartbeat_at=now, stopped_at=now)
    html = user_client.get("/system/").content.decode()
    assert "It stopped cleanly." in html


@pytest.mark.django_db
def test_swap_is_read_from_the_supervisors_sample(user_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The polled page asks the OS nothing: swap, like memory, is what the supervisor last sampled."""

    def no_os_call() -> None:
        raise AssertionError("the System page asked the OS for swap during the request")

    monkeypatch.setattr(psutil, "swap_memory", no_os_call)
    SystemSample.objects.create(
        taken_at=timezone.now(), memory_total=16 * GB, memory_available=4 * GB, swap_total=2 * GB, swap_used=GB // 2
    )
    html = user_client.get("/system/", headers={"HX-Request": "true"}).content.decode()
    assert data_bytes(html, "mem-swap") == GB // 2


@pytest.mark.django_db
def test_memory_chart_loads_only_the_columns_it_draws(user_client: Client) -> None:
    SystemSample.objects.create(taken_at=timezone.now(), memory_total=16 * GB, memory_available=4 * GB)
    with CaptureQueriesContext(connection) as queries:
        assert user_client.get("/system/", headers={"HX-Request": "true"}).status_code == 200
    table = SystemSample._meta.db_table
    # The chart's query is the one over a time window (the other reads the newest sample's figures).
    chart = [
        q["sql"] for q in queries.captured_queries if f'FROM "{table}"' in q["sql"] and '"taken_at" >=' in q["sql"]
    ]
    assert chart, "the chart's query was not run"
    selected = chart[0].split(" FROM ")[0]
    assert '"memory_total"' in selected and '"taken_at"' in selected and f'"{table}"."id"' not in selected


def test_memory_chart_shows_the_last_hour_only(user_client: Client) -> None:
    now = timezone.now()
    SystemSample.objects.create(taken_at=now - timedelta(minutes=90), memory_total=16 * GB, memory_available=1 * GB)
    for minutes, available, servers in ((50, 10, 2), (30, 8, 4), (5, 4, 8)):
        SystemSample.objects.create(
            taken_at=now - timedelta(minutes=minutes),
            memory_total=16 * GB,
            memory_available=available * GB,
            memory_used_by_servers=servers * GB,
        )
    html = user_client.get("/system/").content.decode()
    used = re.search(r'class="used-line" points="([^"]+)"', html)
    assert used, "no chart"
    points = [tuple(map(float, p.split(","))) for p in used.group(1).split()]
    assert len(points) == 3  # the sample from 90 minutes ago is left out
    # x: minutes into the hour shown (600 wide); y: used memory of 16 GB from the top (120 high).
    assert points[0] == pytest.approx((600 * 10 / 60, 120 - 120 * 6 / 16), abs=1.0)
    assert points[-1] == pytest.approx((600 * 55 / 60, 120 - 120 * 12 / 16), abs=1.0)
    assert "3 samples" in html
    # The dashed line at what models may use: three quarters of the RAM the supervisor's newest sample
    # reports (16 GB here), on a 16 GB scale.
    limit_y = re.search(r'class="limit-line" x1="0" x2="600" y1="([\d.]+)"', html)
    expected = 120 - 120 * 0.75
    assert limit_y and float(limit_y.group(1)) == pytest.approx(expected, abs=0.01)


def test_chart_points_placed_by_time_and_area() -> None:
    """The System chart uses the dashboard's sparkline function, placing samples by their time."""
    assert sparkline_points([1, 1], 60, 10, pad=0, xs=[15, 30], x_range=(0, 60)) == "15.0,0.0 30.0,0.0"
    assert sparkline_points([5], 100, 10, maximum=10, pad=0, xs=[60], x_range=(0, 60)) == "100.0,5.0"
    assert sparkline_points([20, 0], 10, 10, maximum=10, pad=0, xs=[0, 5]) == "0.0,0.0 10.0,10.0"
    assert svg_area("0.00,5.00 10.00,2.00", height=10) == "0.00,10.00 0.00,5.00 10.00,2.00 10.00,10.00"


VM_STAT = """Mach Virtual Memory Statistics: (page size of 16384 bytes)
Pages free:                               12000.
Pages active:                            300000.
Pages inactive:                          290000.
Pages speculative:                         8000.
Pages throttled:                              0.
Pages wired down:                        150000.
Pages purgeable:                          10000.
"Translation faults":                 123456789.
Pages copy-on-write:                    2345678.
Anonymous pages:                         400000.
File-backed pages:                       198000.
Pages occupied by compressor:             50000.
"""


def test_macos_memory_is_counted_as_activity_monitor_does() -> None:
    memory = machine_memory.darwin_memory_from(
        VM_STAT, "34359738368\n", "vm.swapusage: total = 2048.00M  used = 1024.50M  free = 1023.50M  (encrypted)"
    )
    used = (400000 - 10000 + 150000 + 50000) * 16384  # app memory + wired + compressed
    assert memory.total == 32 * GB
    assert memory.used == used
    assert memory.available == 32 * GB - used
    assert memory.swap_total == 2048 * 1024**2
    assert memory.swap_used == int(1024.5 * 1024**2)
    assert memory.source == "vm_stat and sysctl"


def test_recommended_memory_comes_from_mlx_when_it_says() -> None:
    told = machine_memory.recommended_for_models(32 * GB, {"max_recommended_working_set_size": 22 * GB})
    assert (told.bytes, told.from_mlx) == (22 * GB, True)
    guessed = machine_memory.recommended_for_models(32 * GB, {"architecture": "x86_64"})
    assert (guessed.bytes, guessed.from_mlx) == (24 * GB, False)


@pytest.mark.django_db
def test_htmx_poll_gets_only_the_live_part(user_client: Client) -> None:
    response = user_client.get("/system/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    # Like the dashboard, the poll pauses while the tab is hidden and catches up when it is shown.
    # (site.js skips the requests of a data-pause-hidden poll while the tab is hidden: no eval for a filter.)
    trigger = "every 5s, visibilitychange from:document"
    assert html.startswith(
        f'<div id="system-live" hx-get="/system/" data-pause-hidden hx-trigger="{trigger}"'
        ' hx-ext="morph" hx-swap="morph:outerHTML">'  # morphed in: a selection on the page survives the poll
    )
    assert "<html" not in html and 'id="versions"' not in html
    assert 'id="mem-total"' in html


@pytest.mark.django_db
def test_admins_see_the_service_section_and_others_do_not(admin_client: Client, user_client: Client) -> None:
    admin_html = admin_client.get("/system/").content.decode()
    assert 'id="services"' in admin_html
    assert f"{sys.executable} manage.py installservice --uninstall" in admin_html
    assert f"cd {settings.BASE_DIR} &amp;&amp; {sys.executable} manage.py installservice<" in admin_html
    assert "mlx-manager-supervisor.service" in admin_html

    user_html = user_client.get("/system/").content.decode()
    assert 'id="services"' not in user_html
    assert "installservice" not in user_html
    # No supervisor runs in this test: the page says how to get one, and a non-admin is sent to an admin.
    assert 'id="supervisor-pid"' not in user_html
    assert "or ask an administrator to install it as a service" in user_html


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    response = client.get("/system/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_macos_reader_falls_back_to_psutil_where_vm_stat_is_missing() -> None:
    memory = machine_memory.memory(platform_name="darwin")
    # On Linux the macOS reader finds no vm_stat and says it fell back to psutil.
    assert memory.source == ("vm_stat and sysctl" if shutil.which("vm_stat") else "psutil")
    assert memory.total == psutil.virtual_memory().total
    assert machine_memory.memory(platform_name="linux").source == "psutil"


@pytest.mark.django_db
def test_search_admission_and_the_system_page_use_one_figure_for_models(admin_client: Client, tmp_path: Path) -> None:
    from library.hub import fits_in_memory
    from servers.supervisor.checks import memory_refusal
    from servers.tests.supervisor_fakes import FakeHost

    total = psutil.virtual_memory().total
    SystemSample.objects.create(taken_at=timezone.now(), memory_total=total, memory_available=total)
    limit = machine_memory.for_models().bytes
    assert limit == machine_memory.for_models(total).bytes < total
    # The System page's "For models".
    assert data_bytes(admin_client.get("/system/").content.decode(), "mem-recommended") == limit
    # The Hub search's "fits in memory" badge.
    assert fits_in_memory(limit) and not fits_in_memory(limit + 1)
    # The supervisor's admission check, on a machine with all its memory available and no headroom:
    # weights one byte over the figure (a sparse file) are refused, and the message names the figure.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with (model / "model.safetensors").open("wb") as weights:
        weights.truncate(limit + 1)
    host = FakeHost()
    host.total = host.available = total
    refusal = memory_refusal(model, host, headroom=0)
    assert refusal and f"models may use {human_bytes(limit)}" in refusal
