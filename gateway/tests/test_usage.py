"""The Usage page (own for members, everyone's for administrators, CSV), retention, and the
dashboard card's gateway section."""

from __future__ import annotations

import ast
import csv
import html
import io
import json
import random
import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from gateway.models import GatewayApi, UsageRecord
from gateway.services import key_create, usage_record
from profiles.models import ServerProfile
from servers.supervisor.core import Supervisor
from servers.tests.supervisor_fakes import FakeHost

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def login(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="accounts.backends.EmailBackend")
    return client


def record(user: User, profile: ServerProfile, tokens: int, **fields: Any) -> UsageRecord:
    return usage_record(
        user=user, profile=profile, model_name=profile.name, api=GatewayApi.CHAT, status=200,
        prompt_tokens=5, completion_tokens=tokens, duration_ms=100.0, tokens_per_second=12.5, **fields,
    )  # fmt: skip


def test_members_see_their_own_admins_everyones(make_user: Any, admin_user: User) -> None:
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    record(alice, tiny, 111)
    record(bob, tiny, 222)
    alices = login(alice).get("/usage/").content.decode()
    assert 'id="usage-completion-tokens">111<' in alices and "bob@example.com" not in alices
    admins = login(admin_user).get("/usage/").content.decode()
    assert 'id="usage-completion-tokens">333<' in admins
    assert "alice@example.com" in admins and "bob@example.com" in admins
    only_bob = login(admin_user).get(f"/usage/?user={bob.pk}").content.decode()
    assert 'id="usage-completion-tokens">222<' in only_bob
    # a member cannot ask for someone else's by the filter
    assert 'id="usage-completion-tokens">111<' in login(alice).get(f"/usage/?user={bob.pk}").content.decode()


@pytest.mark.parametrize("query", ["user=²", "user=99999999999999999999", "user=-1", "days=²", "days=x&user=abc"])
def test_any_query_string_gives_the_page_not_a_500(admin_user: User, query: str) -> None:
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    record(admin_user, tiny, 7)
    answer = login(admin_user).get(f"/usage/?{query}")
    assert answer.status_code == 200
    assert 'id="usage-completion-tokens">7<' in answer.content.decode()  # the bad value fell back to its default


def test_csv_export(make_user: Any) -> None:
    alice = make_user("alice@example.com")
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    record(alice, tiny, 7)
    answer = login(alice).get("/usage/?format=csv&days=30")
    assert answer["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert len(rows) == 1 and rows[0]["model"] == "tiny" and rows[0]["completion_tokens"] == "7"


def test_csv_export_defuses_formulas_a_member_sent(make_user: Any, admin_user: User) -> None:
    """The model name, the error and the key's name are the member's; the administrator's
    spreadsheet must show them as text, not run them."""
    alice = make_user("alice@example.com")
    key = key_create(user=alice, name="@SUM(1)").key
    evil = '=HYPERLINK("http://evil/","x")'
    usage_record(
        user=alice, api_key=key, model_name=evil, api=GatewayApi.CHAT, status=404, error=f"-{evil}", duration_ms=1.0
    )
    answer = login(admin_user).get("/usage/?format=csv&days=30")
    (row,) = csv.DictReader(io.StringIO(answer.content.decode()))
    assert (row["model"], row["error"], row["key"]) == (f"'{evil}", f"'-{evil}", "'@SUM(1)")
    assert row["user"] == "alice@example.com" and row["status"] == "404"


def test_recording_a_request_deletes_nothing(make_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One INSERT on the request's path, whatever the dice say (a prune used to come with one
    write in 200, by random.randrange): an expired record survives, the supervisor prunes it."""
    monkeypatch.setattr(random, "randrange", lambda *args: 0)
    alice = make_user()
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    expired = record(alice, tiny, 1, created_at=timezone.now() - timedelta(days=365))
    with CaptureQueriesContext(connection) as queries:
        record(alice, tiny, 1)
    assert [query["sql"].split()[0] for query in queries.captured_queries] == ["INSERT"]
    assert UsageRecord.objects.filter(pk=expired.pk).exists()


def test_the_supervisors_housekeeping_prunes_the_records_past_the_retention(make_user: Any, settings: Any) -> None:
    settings.MLXM_USAGE_RETENTION_DAYS = 30
    supervisor = Supervisor(host=FakeHost())
    at = datetime.fromtimestamp(supervisor.host.time(), UTC)
    alice = make_user()
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    expired = record(alice, tiny, 1, created_at=at - timedelta(days=30, seconds=1))
    kept = record(alice, tiny, 1, created_at=at - timedelta(days=30) + timedelta(seconds=1))
    supervisor.prune(at)
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not UsageRecord.objects.filter(pk=expired.pk).exists()


def test_dashboard_card_shows_requests_and_use_it(make_user: Any, settings: Any) -> None:
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "mac.local"]
    alice = make_user()
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    record(alice, tiny, 10)
    record(alice, tiny, 10, created_at=timezone.now() - timedelta(hours=2))
    client = login(alice)
    page = client.get("/servers/").content.decode()
    assert "1 request<" in page and "12.5 tokens/s" in page
    # The panel's snippets are not sent with every poll: they come when it is opened, with this
    # app's address as the browser reached it.
    panel = re.search(r'<details class="use-it" id="use-it-(\d+)" hx-preserve hx-get="([^"]+)"', page)
    assert panel is not None and panel.group(1) == str(tiny.pk)
    assert "YOUR_KEY" not in page
    snippets = client.get(panel.group(2), headers={"HX-Request": "true"}, HTTP_HOST="mac.local:8000")
    text = snippets.content.decode().replace("&quot;", '"')
    assert snippets.status_code == 200 and "<html" not in text
    assert 'OpenAI(base_url="http://mac.local:8000/v1", api_key="YOUR_KEY")' in text
    assert 'Anthropic(base_url="http://mac.local:8000", api_key="YOUR_KEY")' in text
    assert 'model="tiny"' in text and "curl http://mac.local:8000/v1/chat/completions" in text


def test_use_it_snippets_name_any_profile_as_code_that_runs(make_user: Any) -> None:
    """A name with quotes, an apostrophe and a dash comes out as a valid Python string and a valid
    shell word of JSON, not escaped for JavaScript (tiny\\u002Dchat) or cut at a quote."""
    name = """it's "tiny"-chat"""
    odd = ServerProfile.objects.create(name=name, model="/m", port=9001)
    answer = login(make_user()).get(f"/accounts/keys/use/{odd.pk}/", headers={"HX-Request": "true"})
    snippets = [html.unescape(pre) for pre in re.findall(r"<pre[^>]*>(.*?)</pre>", answer.content.decode(), re.S)]
    openai_call, anthropic_call = (ast.parse(code).body[2] for code in snippets[:2])
    for call in (openai_call, anthropic_call):
        assert isinstance(call, ast.Assign) and isinstance(call.value, ast.Call)
        assert {k.arg: ast.literal_eval(k.value) for k in call.value.keywords if k.arg == "model"} == {"model": name}
    curl = shlex.split(snippets[2].replace("\\\n", " "))
    assert json.loads(curl[curl.index("-d") + 1])["model"] == name


def test_use_it_panel_needs_a_known_profile_and_a_login(make_user: Any, client: Client) -> None:
    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    assert login(make_user()).get(f"/accounts/keys/use/{tiny.pk + 1}/").status_code == 404
    assert client.get(f"/accounts/keys/use/{tiny.pk}/").status_code == 302  # to the login page
    assert login(make_user()).post(f"/accounts/keys/use/{tiny.pk}/").status_code == 405


def test_dashboard_cards_count_a_request_recorded_since_the_last_poll(
    admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cards' usage figures are reused between polls (one cheap query) until a request is
    recorded: the next poll shows it."""
    from servers.models import Server, ServerState

    tiny = ServerProfile.objects.create(name="tiny", model="/m", port=9001)
    Server.objects.create(profile=tiny, state=ServerState.RUNNING, desired_state="running")
    client = login(admin_user)
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)  # the same minute for every poll
    html = client.get("/servers/", headers={"HX-Request": "true"}).content.decode()
    assert '<span class="card-requests">0 requests</span>' in html
    with CaptureQueriesContext(connection) as queries:
        client.get("/servers/", headers={"HX-Request": "true"})
    assert sum("gateway_usagerecord" in q["sql"] for q in queries.captured_queries) == 1, "only the newest id"
    record(admin_user, tiny, 9, created_at=now)
    html = client.get("/servers/", headers={"HX-Request": "true"}).content.decode()
    assert '<span class="card-requests">1 request</span>' in html
    assert "12.5 tokens/s" in html
