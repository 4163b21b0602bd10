"""Models and downloads through the API: a member acts only on their own, as on the Models page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from api.tests.conftest import ApiClient
from library.models import Download, DownloadState
from library.tests.test_pages import fake_cached_repo
from profiles.models import ServerProfile


def test_a_member_may_not_delete_a_model_someone_else_downloaded(member_api: ApiClient, admin_user: User) -> None:
    fake_cached_repo(Path(settings.HF_HUB_CACHE), "mlx-community/Theirs")
    Download.objects.create(repo_id="mlx-community/Theirs", requested_by=admin_user, state=DownloadState.COMPLETED)
    response = member_api.call("post", "/models/delete", {"repo_id": "mlx-community/Theirs"})
    assert response.status_code == 403, response.content
    assert "Only the person who downloaded mlx-community/Theirs" in response.json()["detail"]
    assert (Path(settings.HF_HUB_CACHE) / "models--mlx-community--Theirs").exists()


def test_downloading_a_model_someone_else_has_gives_no_right_to_delete_it(
    member_api: ApiClient, approved_user: User, admin_user: User
) -> None:
    """A download of a model already in the cache completes at once: it must not make its
    requester one who may delete what the administrator downloaded."""
    fake_cached_repo(Path(settings.HF_HUB_CACHE), "mlx-community/Shared")
    for who in (admin_user, approved_user):
        Download.objects.create(repo_id="mlx-community/Shared", requested_by=who, state=DownloadState.COMPLETED)
    response = member_api.call("post", "/models/delete", {"repo_id": "mlx-community/Shared"})
    assert response.status_code == 403, response.content
    assert "Other people downloaded mlx-community/Shared too" in response.json()["detail"]
    assert (Path(settings.HF_HUB_CACHE) / "models--mlx-community--Shared").exists()


def test_a_member_may_not_cancel_someone_elses_download(member_api: ApiClient, admin_user: User) -> None:
    theirs = Download.objects.create(repo_id="mlx-community/Theirs", requested_by=admin_user)
    response = member_api.call("post", f"/models/downloads/{theirs.pk}/cancel")
    assert response.status_code == 403, response.content
    assert "Only the person who asked for mlx-community/Theirs" in response.json()["detail"]
    theirs.refresh_from_db()
    assert not theirs.cancel_requested


def test_a_members_model_check_says_one_thing_for_every_path_outside_the_allowed_folders(
    member_api: ApiClient, tmp_path: Path
) -> None:
    """As the profile page's check: it cannot be used to explore the disk."""
    (tmp_path / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 4096}')
    answers = {
        member_api.call("get", "/models/check", QUERY_STRING=f"model={path}").json()["problem"]
        for path in ("/etc", "/no/such/folder", str(tmp_path))
    }
    assert len(answers) == 1 and "only from the Hugging Face cache and the model folders" in str(answers.pop())


def test_an_administrators_model_check_still_reads_any_folder(admin_api: ApiClient, tmp_path: Path) -> None:
    answer = admin_api.call("get", "/models/check", QUERY_STRING="model=/etc").json()
    assert "config.json" in answer["problem"]


def test_a_lone_surrogate_in_a_download_is_a_400_not_a_500(admin_api: ApiClient) -> None:
    response = admin_api.call("post", "/models/downloads", '{"repo_id": "a/b", "revision": "a\\ud800b"}')
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "revision" and "surrogate" in response.json()["detail"]
    assert not Download.objects.exists()


@pytest.mark.parametrize("revision", ["r" * 101, "main branch", "main;rm", "ref\nname", "v1?x=1"])
def test_a_revision_that_is_no_git_ref_is_a_400_naming_it(admin_api: ApiClient, revision: str) -> None:
    response = admin_api.call("post", "/models/downloads", {"repo_id": "a/b", "revision": revision})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "revision" and response.json()["detail"].startswith("revision: ")
    assert not Download.objects.exists()


@pytest.mark.parametrize("revision", ["r" * 100, "v1.2_rc-3", "refs/pr/7", "0123456789abcdef0123456789abcdef01234567"])
def test_a_git_ref_or_sha_is_queued(admin_api: ApiClient, revision: str) -> None:
    response = admin_api.call("post", "/models/downloads", {"repo_id": "a/b", "revision": revision})
    assert response.status_code == 202, response.content
    assert Download.objects.get().revision == revision


def test_local_lists_a_folder_a_profile_serves(admin_api: ApiClient, tiny_model: Path, settings: Any) -> None:
    """`mlxm ls` said nothing while a profile served a model folder outside the allowed ones."""
    settings.MLXM_MODEL_DIRS = []
    ServerProfile.objects.create(name="served", model=str(tiny_model), port=9407)
    listed = admin_api.call("get", "/models/local").json()
    assert (str(tiny_model), False) in [(m["name"], m["in_cache"]) for m in listed]
