"""The audit page: who did what and when, from the services that act, for administrators;
members see their own profiles' records only."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import User, UserStatus
from audit.models import AuditKind, AuditRecord
from audit.services import audit_record
from profiles.models import ServerProfile
from servers.models import Server
from servers.states import State
from servers.supervisor.transitions import transition


@pytest.fixture
def profile(make_profile: Callable[..., ServerProfile], admin_user: User) -> ServerProfile:
    return make_profile("Qwen fast", by=admin_user)


def rows(html: str) -> list[str]:
    """The table's rows as text, one per record."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return [" ".join(part.split()) for part in body.split("</tr>")[:-1]]


def test_start_stop_and_approval_are_listed_with_who_did_them(
    admin_client: Client,
    admin_user: User,
    user_client: Client,
    approved_user: User,
    profile: ServerProfile,
    make_user: Callable[..., User],
) -> None:
    assert admin_client.post(f"/servers/{profile.pk}/start/").status_code == 302
    server = Server.objects.get(profile=profile)
    transition(server, State.STARTING, cause="user")  # as the supervisor does
    assert admin_client.post(f"/servers/{profile.pk}/stop/").status_code == 302
    newcomer = make_user("bob@example.com", status=UserStatus.PENDING)
    assert admin_client.post(f"/users/{newcomer.pk}/approve/").status_code == 302

    page = admin_client.get("/audit/")
    assert page.status_code == 200
    text = "\n".join(rows(page.content.decode()))
    assert "admin@example.com Server stop Qwen fast" in strip_tags(text)
    assert "admin@example.com Server start Qwen fast" in strip_tags(text)
    assert "admin@example.com User approve bob@example.com" in strip_tags(text)
    assert "supervisor Server stopped → starting Qwen fast" in strip_tags(text)


def strip_tags(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_a_member_cannot_open_the_audit_page(user_client: Client) -> None:
    assert user_client.get("/audit/").status_code == 403
    assert user_client.get("/audit/?format=csv").status_code == 403


def test_nobody_is_sent_to_log_in(db: None) -> None:
    response = Client().get("/audit/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_member_sees_only_the_records_of_their_own_profiles(
    user_client: Client, approved_user: User, admin_user: User, make_profile: Callable[..., ServerProfile]
) -> None:
    mine = make_profile("mine", by=approved_user)
    theirs = make_profile("theirs", by=admin_user)
    audit_record(kind=AuditKind.SERVER, action="start", subject=mine.name, by=approved_user, profile_id=mine.pk)
    audit_record(kind=AuditKind.SERVER, action="start", subject=theirs.name, by=admin_user, profile_id=theirs.pk)
    audit_record(kind=AuditKind.USER, action="approve", subject="x@example.com", by=admin_user)
    text = strip_tags(user_client.get("/activity/").content.decode())
    assert "Server start mine" in text
    assert "theirs" not in text
    assert "x@example.com" not in text
    exported = user_client.get("/activity/?format=csv")
    assert [r["subject"] for r in csv.DictReader(io.StringIO(exported.getvalue().decode()))] == ["mine"]


def test_filters_by_person_server_and_kind(
    admin_client: Client, admin_user: User, approved_user: User, make_profile: Callable[..., ServerProfile]
) -> None:
    one, two = make_profile("one", by=admin_user), make_profile("two", by=admin_user)
    audit_record(kind=AuditKind.SERVER, action="start", subject="one", by=admin_user, profile_id=one.pk)
    audit_record(kind=AuditKind.SERVER, action="stop", subject="two", by=approved_user, profile_id=two.pk)
    audit_record(kind=AuditKind.PROFILE, action="edit", subject="two", by=admin_user, profile_id=two.pk)
    audit_record(kind=AuditKind.SERVER, action="running → backoff", subject="two", profile_id=two.pk)

    def listed(query: str) -> list[str]:
        return [strip_tags(r) for r in rows(admin_client.get(f"/audit/?{query}").content.decode())]

    assert len(listed("person=alice@example.com")) == 1
    assert len(listed("person=supervisor")) == 1
    assert len(listed("server=two")) == 3
    assert len(listed("server=two&kind=profile")) == 1
    assert len(listed("kind=server&person=admin@example.com")) == 1


def test_a_bad_filter_is_an_error_on_the_page_not_a_500(admin_client: Client) -> None:
    response = admin_client.get("/audit/?kind=nonsense&person=nobody@example.com&page=zzz")
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()


def test_pages_of_fifty_newest_first(admin_client: Client, admin_user: User) -> None:
    for n in range(60):
        audit_record(kind=AuditKind.USER, action="edit", subject=f"user{n:02d}@example.com", by=admin_user)
    first = admin_client.get("/audit/?kind=user").content.decode()
    second = admin_client.get("/audit/?kind=user&page=2").content.decode()
    assert len(rows(first)) == 50 and len(rows(second)) == 10
    assert "user59@example.com" in first and "user00@example.com" in second
    assert "kind=user&amp;page=2" in first  # the next link keeps the filter


def test_csv_export_keeps_the_filter_and_defuses_formulas(admin_client: Client, admin_user: User) -> None:
    audit_record(kind=AuditKind.DOWNLOAD, action="download", subject="=HYPERLINK(1)", by=admin_user)
    audit_record(kind=AuditKind.USER, action="approve", subject="a@example.com", by=admin_user)
    response = admin_client.get("/audit/?kind=download&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    assert [(r["who"], r["action"], r["subject"]) for r in records] == [
        ("admin@example.com", "download", "'=HYPERLINK(1)")
    ]


def test_records_outlive_the_people_and_profiles_they_name(
    admin_client: Client, admin_user: User, make_user: Callable[..., User], make_profile: Callable[..., ServerProfile]
) -> None:
    leaver = make_user("leaver@example.com")
    profile = make_profile("short-lived", by=leaver)
    audit_record(kind=AuditKind.PROFILE, action="create", subject=profile.name, by=leaver, profile_id=profile.pk)
    assert admin_client.post(f"/profiles/{profile.pk}/delete/").status_code == 302
    assert admin_client.post(f"/users/{leaver.pk}/delete/").status_code == 302
    text = strip_tags(admin_client.get("/audit/").content.decode())
    assert "leaver@example.com Profile create short-lived" in text
    assert "admin@example.com Profile delete short-lived" in text
    assert "admin@example.com User delete leaver@example.com" in text
    assert AuditRecord.objects.filter(actor_email="leaver@example.com", actor=None).exists()
