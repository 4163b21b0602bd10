"""Search, the model page, queueing and deleting, through Django's test client and the real
huggingface_hub client talking to the hub stand-in."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from huggingface_hub import snapshot_download

from accounts.models import User
from library.local import cached_repo_ids
from library.models import Download, DownloadState
from profiles.models import ServerProfile
from servers.models import Server, ServerState

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
TINY = "mlx-community/Tiny-Llama-4bit"
QWEN = "mlx-community/Qwen3-4B-4bit"
GIANT = "mlx-community/Giant-Model-1T-8bit"
MIRROR = "someone-else/Qwen3-4B-mirror"


def page(client: Client, url: str, data: dict[str, str] | None = None) -> str:
    """The page's HTML with filesizeformat's non-breaking spaces made plain."""
    return client.get(url, data or {}).content.decode().replace("\xa0", " ")


def rows(html: str) -> list[str]:
    """Repo ids of the result rows, in order."""
    return re.findall(r'<tr data-repo="([^"]+)"', html)


def row_html(html: str, repo_id: str) -> str:
    start = html.index(f'<tr data-repo="{repo_id}"')
    return html[start : html.index("</tr>", start)]


def test_search_defaults_to_mlx_community_and_author_any_widens_it(user_client: Client, hub: Any) -> None:
    html = user_client.get("/models/search/", {"q": "qwen"}).content.decode()
    assert rows(html) == [QWEN]
    html = user_client.get("/models/search/", {"q": "qwen", "author": "any"}).content.decode()
    assert set(rows(html)) == {QWEN, MIRROR}
    html = user_client.get("/models/search/", {"q": "qwen", "author": "someone-else"}).content.decode()
    assert rows(html) == [MIRROR]


def test_search_sorts_by_downloads_likes_and_recency(user_client: Client, hub: Any) -> None:
    def order(sort: str) -> list[str]:
        html = user_client.get("/models/search/", {"q": "", "author": "mlx-community", "sort": sort}).content.decode()
        return [r for r in rows(html) if r != "mlx-community/Medium-Model-8bit"]

    assert order("downloads") == [QWEN, GIANT, TINY]
    assert order("likes") == [GIANT, QWEN, TINY]
    assert order("recent") == [QWEN, TINY, GIANT]


def test_search_shows_sizes_params_quantization_and_max_size_filters(user_client: Client, hub: Any) -> None:
    html = page(user_client, "/models/search/", {"q": "", "author": "mlx-community"})
    qwen = row_html(html, QWEN)
    assert '<td class="size">2.3 GB</td>' in qwen  # 2.1 GiB from the Hub's file sizes, in decimal GB like the Hub
    assert "800.0M" in qwen and "4-bit" in qwen and "90,000" in qwen and "2025-05-01" in qwen
    assert '<td class="size">219.9 TB</td>' in row_html(html, GIANT)  # 200 TiB
    small = user_client.get("/models/search/", {"q": "", "author": "mlx-community", "max_size": str(4 * 1000**3)})
    assert GIANT not in rows(small.content.decode()) and QWEN in rows(small.content.decode())


def test_fits_in_memory_and_downloaded_badges(user_client: Client, hub: Any) -> None:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)  # put the tiny model in the cache
    html = user_client.get("/models/search/", {"q": "", "author": "mlx-community"}).content.decode()
    assert "badge-downloaded" in row_html(html, TINY)
    assert "badge-downloaded" not in row_html(html, QWEN)
    assert "badge-fits" in row_html(html, QWEN)  # 2.1 GiB on a machine with more memory than that
    assert "badge-fits" not in row_html(html, GIANT) and "too big" in row_html(html, GIANT)


def test_htmx_search_answers_with_the_results_fragment(user_client: Client, hub: Any) -> None:
    response = user_client.get("/models/search/", {"q": "tiny"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "<html" not in html and rows(html) == [TINY]


def test_hub_down_gives_a_clear_message_not_a_500(user_client: Client, hub: Any, settings: Any) -> None:
    settings.MLXM_HUB_TIMEOUT = 1.5
    hub.down = True
    response = user_client.get("/models/search/", {"q": "qwen"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "did not answer in time" in html and "local models still work" in html
    assert rows(html) == []
    model_page = user_client.get(f"/models/hub/{QWEN}/")
    assert model_page.status_code == 200
    page = model_page.content.decode()
    alert = re.search(r'<p class="message message-error hub-error" role="alert">([^<]*)</p>', page)
    assert alert, "the model page does not say the Hub is down"
    # The model page's one call gets the stand-in's 500 back at once (search retries until its deadline).
    assert alert.group(1) == "The Hugging Face Hub answered with an error (HTTP 500). Try again later."
    library = user_client.get("/models/")
    assert library.status_code == 200 and "did not answer in time" not in library.content.decode()


def test_model_page_shows_files_facts_card_profiles_and_create_link(user_client: Client, hub: Any) -> None:
    ServerProfile.objects.create(name="tiny-chat", model=TINY, port=8111)
    html = page(user_client, f"/models/hub/{TINY}/")
    assert re.search(r"model\.safetensors</td><td>[\d.]+ KB", html)
    assert "<dt>Family</dt><dd>llama</dd>" in html and "<dt>Context length</dt><dd>256</dd>" in html
    assert "A tiny llama model for tests, made with random weights." in html
    assert "More text." not in html  # only the first paragraph
    assert "tiny-chat" in html
    assert 'href="/profiles/new/?model=mlx-community%2FTiny-Llama-4bit&amp;kind=chat&amp;engine=mlx_lm"' in html


def test_downloads_poll_pauses_while_the_tab_is_hidden(user_client: Client) -> None:
    Download.objects.create(repo_id="mlx-community/Medium-Model-8bit")
    html = user_client.get("/models/downloads/", headers={"HX-Request": "true"}).content.decode()
    assert 'data-pause-hidden hx-trigger="every 1s, visibilitychange from:document"' in html


def test_download_button_queues_one_row_and_bad_ids_none(user_client: Client, hub: Any) -> None:
    response = user_client.post("/models/download/", {"repo_id": QWEN})
    assert response.status_code == 302
    assert list(Download.objects.values_list("repo_id", "state")) == [(QWEN, "queued")]
    response = user_client.post("/models/download/", {"repo_id": QWEN}, headers={"HX-Request": "true"})
    assert "queued" in response.content.decode() and Download.objects.count() == 1  # joined
    for bad in ("../../etc", "/etc/passwd", "", "no slash"):
        response = user_client.post("/models/download/", {"repo_id": bad})
        assert response.status_code == 400 and "is not a Hugging Face repo id" in response.content.decode()
    assert Download.objects.count() == 1
    page = user_client.get("/models/").content.decode()
    assert QWEN in page and "<progress" in page


def _cache_listing(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))


def test_delete_removes_the_repo_from_the_cache(admin_client: Client, hub: Any, empty_cache: Path) -> None:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)
    assert TINY in admin_client.get("/models/").content.decode()
    response = admin_client.post("/models/delete/", {"repo_id": TINY})
    assert response.status_code == 302
    assert TINY not in cached_repo_ids()
    assert not (empty_cache / "models--mlx-community--Tiny-Llama-4bit").exists()
    assert "No models yet" in admin_client.get("/models/").content.decode()


def test_delete_is_refused_while_a_running_server_uses_it(admin_client: Client, hub: Any) -> None:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)
    profile = ServerProfile.objects.create(name="tiny-chat", model=TINY, port=8112)
    Server.objects.create(profile=profile, state=ServerState.RUNNING)
    response = admin_client.post("/models/delete/", {"repo_id": TINY})
    assert response.status_code == 409
    assert "in use by a running server (tiny-chat)" in response.content.decode()
    assert TINY in cached_repo_ids()
    Server.objects.filter(profile=profile).update(state=ServerState.STOPPED)
    assert admin_client.post("/models/delete/", {"repo_id": TINY}).status_code == 302
    assert TINY not in cached_repo_ids()


@pytest.mark.parametrize(
    "repo_id", ["../../etc", "/etc", "/tmp", "mlx-community/../../etc", "..", "models--mlx-community--Tiny-Llama-4bit"]
)
def test_delete_refuses_paths_and_touches_nothing(
    user_client: Client, hub: Any, empty_cache: Path, tmp_path: Path, repo_id: str
) -> None:
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    before = _cache_listing(empty_cache)
    response = user_client.post("/models/delete/", {"repo_id": repo_id})
    assert response.status_code in (400, 409)
    assert _cache_listing(empty_cache) == before
    assert outside.read_text() == "keep me" and Path("/etc/hostname").exists()


def test_local_page_lists_cache_and_model_dirs_with_profiles(
    user_client: Client, hub: Any, settings: Any, tiny_model: Path
) -> None:
    settings.MLXM_MODEL_DIRS = [tiny_model.parent]
    html = user_client.get("/models/").content.decode()
    assert str(tiny_model) in html and "folder" in html
    snapshot_download(TINY, cache_dir=settings.HF_HUB_CACHE)
    ServerProfile.objects.create(name="tiny-chat", model=TINY, port=8113)
    html = user_client.get("/models/").content.decode()
    row = html[html.index(f'data-model="{TINY}"') :]
    row = row[: row.index("</tr>")]
    assert "tiny-chat" in row and "llama" in row and "256 ctx" in row
    assert 'class="muted last-used-never">never<' in row  # never served
    # Delete names the profiles that use the model, before anyone clicks it.
    assert "Profiles that use it: tiny-chat." in row  # in the data-confirm question site.js asks
    assert 'title="Used by the profiles tiny-chat"' in row


def test_failed_downloads_can_be_retried_or_dismissed_and_finished_ones_leave(
    user_client: Client, approved_user: User
) -> None:
    now = timezone.now()
    failed = Download.objects.create(
        repo_id=QWEN, state=DownloadState.FAILED, error="HTTP 500", finished_at=now, requested_by=approved_user
    )
    done = Download.objects.create(repo_id=TINY, state=DownloadState.COMPLETED, finished_at=now)
    Download.objects.create(repo_id=GIANT, state=DownloadState.COMPLETED, finished_at=now - timedelta(hours=2))
    html = user_client.get("/models/downloads/", headers=HTMX).content.decode()
    assert f'data-download="{failed.pk}"' in html and f'data-download="{done.pk}"' in html
    assert GIANT not in html  # finished long ago: the list does not pile up
    assert f"/models/downloads/{failed.pk}/retry/" in html and f"/models/downloads/{failed.pk}/dismiss/" in html
    assert f"/models/downloads/{done.pk}/retry/" not in html

    html = user_client.post(f"/models/downloads/{failed.pk}/retry/", headers=HTMX).content.decode()
    queued = Download.objects.get(repo_id=QWEN)
    assert queued.state == DownloadState.QUEUED and queued.pk != failed.pk  # queued again, the failure gone
    assert f'data-download="{queued.pk}"' in html
    refused = user_client.post(f"/models/downloads/{queued.pk}/retry/", follow=True).content.decode()
    assert "only a failed or cancelled download can be tried again" in refused

    cancelled = Download.objects.create(
        repo_id=MIRROR, state=DownloadState.CANCELLED, finished_at=now, requested_by=approved_user
    )
    user_client.post(f"/models/downloads/{cancelled.pk}/dismiss/", headers=HTMX)
    assert not Download.objects.filter(pk=cancelled.pk).exists()
    user_client.post(f"/models/downloads/{queued.pk}/dismiss/", headers=HTMX)
    assert Download.objects.filter(pk=queued.pk).exists()  # a queued one is cancelled, not dismissed


def test_empty_state_guides_to_search(user_client: Client) -> None:
    html = user_client.get("/models/").content.decode()
    assert "No models yet" in html and 'href="/models/search/"' in html


def test_model_page_for_an_unknown_repo_or_a_path_is_a_message(user_client: Client, hub: Any) -> None:
    response = user_client.get("/models/hub/mlx-community/No-Such-Model/")
    assert response.status_code == 200 and "No such model on the Hub" in response.content.decode()
    assert user_client.get("/models/hub/../../etc/").status_code == 404


def fake_cached_repo(cache: Path, repo_id: str) -> None:
    """A repo in the Hugging Face cache's own layout (refs, snapshots, blobs), as scan_cache_dir reads it."""
    sha = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    blob = repo / "blobs" / ("b" * 40)
    blob.parent.mkdir()
    blob.write_text('{"model_type": "llama"}')
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(blob)


def test_the_local_page_runs_as_many_queries_for_twenty_models_as_for_one(
    user_client: Client, empty_cache: Path
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries_for(count: int) -> int:
        shutil.rmtree(empty_cache, ignore_errors=True)
        for number in range(count):
            fake_cached_repo(empty_cache, f"mlx-community/Model-{number}-4bit")
        with CaptureQueriesContext(connection) as captured:
            html = user_client.get("/models/").content.decode()
        assert html.count("mlx-community/Model-") >= count and f"Model-{count - 1}-4bit" in html
        return len(captured.captured_queries)

    for number in range(20):  # every model has a profile, and half have a running server
        profile = ServerProfile.objects.create(
            name=f"p{number}", model=f"mlx-community/Model-{number}-4bit", port=9000 + number
        )
        if number % 2:
            Server.objects.create(profile=profile, state=ServerState.RUNNING)
    one = queries_for(1)
    twenty = queries_for(20)
    assert twenty == one
    assert "p19" in user_client.get("/models/").content.decode()


def test_a_member_cannot_cancel_retry_or_dismiss_another_members_download(user_client: Client, make_user: Any) -> None:
    other = make_user("other@example.com")
    now = timezone.now()
    failed = Download.objects.create(
        repo_id=QWEN, state=DownloadState.FAILED, error="HTTP 500", finished_at=now, requested_by=other
    )
    running = Download.objects.create(repo_id=TINY, state=DownloadState.DOWNLOADING, requested_by=other)
    html = user_client.get("/models/downloads/", headers=HTMX).content.decode()
    assert f'data-download="{failed.pk}"' in html  # everyone sees the list...
    assert f"/models/downloads/{failed.pk}/retry/" not in html  # ...but is offered only their own buttons
    assert f"/models/downloads/{running.pk}/cancel/" not in html
    assert user_client.post(f"/models/downloads/{failed.pk}/retry/", headers=HTMX).status_code == 403
    assert user_client.post(f"/models/downloads/{failed.pk}/dismiss/", headers=HTMX).status_code == 403
    assert user_client.post(f"/models/downloads/{running.pk}/cancel/", headers=HTMX).status_code == 403
    assert Download.objects.filter(pk=failed.pk, state=DownloadState.FAILED).exists()
    assert not Download.objects.get(pk=running.pk).cancel_requested
    assert Download.objects.count() == 2  # nothing queued, nothing removed
