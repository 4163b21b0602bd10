"""Default deny, proved on every URL pattern of the project (walked, not listed): a view added
later in any app is covered without anyone remembering to add it here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from accounts.middleware import is_public
from accounts.models import User, UserStatus
from accounts.tests.urlwalk import WalkedURL, all_urls

# The only views open to anyone, each marked @public on purpose.
EXEMPT = {"healthz", "accounts:login", "accounts:register", "accounts:pending"}
# Public to the middleware because they answer 401/403 themselves (a scraper cannot follow a
# redirect to the login page).
SELF_GUARDED = {"monitoring:metrics"}
# Open to the middleware because they authenticate each request themselves (API key, or session +
# CSRF token): anyone else gets a 401 in the API's own JSON shape, never a page.
KEY_AUTHENTICATED = {
    "gateway:models",
    "gateway:model",
    "gateway:chat_completions",
    "gateway:completions",
    "gateway:messages",
    "gateway:count_tokens",
    "gateway:responses",
    "gateway:embeddings",
    "gateway:rerank",
    "gateway:not_found",
}
# Every view of /api/v1/ (namespace `api`) authenticates each request with a key (its docs and
# schema: a key or a signed-in user); api/tests/test_auth.py walks them and proves the 401s.
API_NAMESPACE = "api:"
# Open to every signed-in account, pending and disabled ones too (issue 12: leaving is always
# allowed); POST only, so it is walked by its own test below, not with the pages.
ALWAYS_OPEN = {"accounts:logout"}
ADMIN_ONLY_PREFIXES = ("/users/", "/admin/", "/audit/")
HTMX = {"HX-Request": "true"}

pytestmark = pytest.mark.django_db
Response = Any  # the test client's response


def _guarded() -> list[WalkedURL]:
    return [
        u
        for u in all_urls()
        if u.name not in EXEMPT | SELF_GUARDED | KEY_AUTHENTICATED | ALWAYS_OPEN
        and not u.name.startswith(API_NAMESPACE)
    ]


def _location(response: Response) -> str:
    return urlsplit(response.get("Location", "")).path


def _gate(response: Response) -> str:
    """What the response did with the visitor: sent them to log in, to the pending page, to the
    admin's login, refused them, or let them in ("open")."""
    if response.status_code == 403:
        return "forbidden"
    if response.status_code in (301, 302):
        return {
            "/accounts/login/": "login",
            "/accounts/pending/": "pending",
            "/admin/login/": "admin-login",
        }.get(_location(response), "open")
    return "open"


def _check(
    urls: list[WalkedURL],
    request: Callable[[WalkedURL], Response],
    expect: Callable[[WalkedURL, Response], bool],
) -> None:
    failures = []
    for walked in urls:
        response = request(walked)
        if not expect(walked, response):
            failures.append(
                f"{walked}: {response.status_code} {response.get('Location', '')} {response.get('HX-Redirect', '')}"
            )
    assert not failures, "\n".join(failures)


def test_walk_finds_every_app_and_each_url_resolves_to_its_view() -> None:
    names = {u.name for u in all_urls()}
    # A few from each URLconf include: the walk reaches into every app and into the admin.
    assert {"users:list", "users:approve", "users:delete", "accounts:account", "admin:index"} <= names
    assert {"servers:dashboard", "profiles:list", "library:local", "system:system"} <= names
    assert len(names) > 40


def test_only_the_explicit_exemptions_are_public() -> None:
    public = {u.name for u in all_urls() if is_public(u.callback) and not u.name.startswith(API_NAMESPACE)}
    assert public == EXEMPT | SELF_GUARDED | KEY_AUTHENTICATED | ALWAYS_OPEN
    api_views = [u for u in all_urls() if u.name.startswith(API_NAMESPACE)]
    assert len(api_views) > 30 and all(is_public(u.callback) for u in api_views)


def test_self_guarded_views_refuse_all_but_administrators(
    client: Client, user_client: Client, admin_client: Client, make_user: Callable[..., User]
) -> None:
    pending = Client()
    pending.force_login(make_user(status=UserStatus.PENDING))
    urls = [u for u in all_urls() if u.name in SELF_GUARDED]
    assert len(urls) == len(SELF_GUARDED)
    _check(urls, lambda u: client.get(u.url), lambda u, r: r.status_code == 401)
    _check(urls, lambda u: pending.get(u.url), lambda u, r: r.status_code in (401, 403))
    _check(urls, lambda u: user_client.get(u.url), lambda u, r: r.status_code == 403)
    _check(urls, lambda u: admin_client.get(u.url), lambda u, r: r.status_code == 200)


def test_key_authenticated_views_refuse_anonymous_with_401_json(client: Client) -> None:
    walked = [u for u in all_urls() if u.name in KEY_AUTHENTICATED]
    assert len(walked) == len(KEY_AUTHENTICATED)
    for u in walked:
        response = client.post(u.url) if u.name != "gateway:models" else client.get(u.url)
        assert response.status_code == 401 and response["Content-Type"] == "application/json", u


def test_exempt_pages_open_to_anyone(client: Client) -> None:
    exempt = [u for u in all_urls() if u.name in EXEMPT]
    assert len(exempt) == len(EXEMPT)
    _check(exempt, lambda u: client.get(u.url), lambda u, r: r.status_code == 200)


def test_anonymous_is_sent_to_login_everywhere_else(client: Client) -> None:
    urls = _guarded()

    def to_login_with_next(walked: WalkedURL, response: Response) -> bool:
        return _gate(response) == "login" and "next=" in response["Location"]

    _check(urls, lambda u: client.get(u.url), to_login_with_next)
    _check(urls, lambda u: client.post(u.url), to_login_with_next)


def test_anonymous_htmx_request_gets_hx_redirect_to_login(client: Client) -> None:
    def hx_to_login(walked: WalkedURL, response: Response) -> bool:
        return response.status_code == 200 and response.get("HX-Redirect", "").startswith("/accounts/login/")

    _check(_guarded(), lambda u: client.get(u.url, headers=HTMX), hx_to_login)
    # The login page brings the user back to the page the fragment was on.
    response = client.get("/servers/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/profiles/?x=1")
    assert response["HX-Redirect"] == "/accounts/login/?next=/profiles/%3Fx%3D1"


def test_pending_account_reaches_nothing_but_the_pending_page(make_user: Callable[..., User]) -> None:
    client = Client()
    client.force_login(make_user(status=UserStatus.PENDING))
    _check(_guarded(), lambda u: client.get(u.url), lambda u, r: _gate(r) == "pending")
    _check(_guarded(), lambda u: client.post(u.url), lambda u, r: _gate(r) == "pending")
    _check(
        _guarded(),
        lambda u: client.get(u.url, headers=HTMX),
        lambda u, r: r.get("HX-Redirect") == "/accounts/pending/",
    )


def test_disabled_account_is_logged_out_on_every_url(make_user: Callable[..., User]) -> None:
    user = make_user(status=UserStatus.DISABLED)
    client = Client()

    def as_disabled(method: str) -> Callable[[WalkedURL], Response]:
        def request(walked: WalkedURL) -> Response:
            client.force_login(user)
            response: Response = getattr(client, method)(walked.url)
            response.still_logged_in = "_auth_user_id" in client.session
            return response

        return request

    def refused(walked: WalkedURL, response: Response) -> bool:
        return _gate(response) == "login" and not response.still_logged_in

    _check(_guarded(), as_disabled("get"), refused)
    _check(_guarded(), as_disabled("post"), refused)


def test_approved_user_is_kept_out_of_users_and_admin(user_client: Client) -> None:
    def admin_only(walked: WalkedURL) -> bool:
        return walked.url.startswith(ADMIN_ONLY_PREFIXES)

    def refused(walked: WalkedURL, response: Response) -> bool:
        if walked.url.startswith("/users/"):
            return response.status_code == 403
        if walked.name == "admin:login":  # the admin's own login form, saying they may not enter
            return response.status_code == 200 and b"not authorized to access this page" in response.content
        if walked.name == "admin:logout":
            return response.status_code in (302, 405) and _location(response) in ("", "/admin/")
        return _gate(response) in ("admin-login", "forbidden")

    admin_urls = [u for u in _guarded() if admin_only(u)]
    assert any(u.url.startswith("/users/") for u in admin_urls) and any(u.url.startswith("/admin/") for u in admin_urls)
    _check(admin_urls, lambda u: user_client.get(u.url), refused)
    _check(admin_urls, lambda u: user_client.post(u.url), refused)
    # Everything else is theirs.
    others = [u for u in _guarded() if not admin_only(u)]
    _check(others, lambda u: user_client.get(u.url), lambda u, r: _gate(r) == "open" and r.status_code < 500)


def test_admin_reaches_everything(admin_client: Client) -> None:
    def let_in(walked: WalkedURL, response: Response) -> bool:
        if response.status_code == 403 and walked.url.startswith("/admin/"):
            # Django admin's own model permissions: axes' logs, API keys (made on their own page,
            # where the secret is shown once) and usage records have no add view, and
            # autocomplete wants parameters. Our gate never answers 403 under /admin/.
            return walked.name == "admin:autocomplete" or (
                walked.name.startswith(("admin:axes_", "admin:gateway_")) and walked.name.endswith("_add")
            )
        return _gate(response) == "open" and response.status_code < 500

    _check(_guarded(), lambda u: admin_client.get(u.url), let_in)


def test_healthz_is_open_and_reveals_nothing(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert client.post("/healthz").status_code == 405
