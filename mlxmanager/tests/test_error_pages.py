"""403, 404 and 500 answer with the site's own pages, navigation included; a 403 is one log line."""

from __future__ import annotations

import logging

import pytest
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db


def test_404_is_styled_with_the_navigation(user_client: Client) -> None:
    response = user_client.get("/no/such/page/")
    html = response.content.decode()
    assert response.status_code == 404
    assert "There is nothing here" in html and 'class="main-nav"' in html and "/static/css/site.css" in html


def test_403_is_styled_and_logged_without_a_traceback(user_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="django.request")
    response = user_client.get("/users/")  # administrators only
    html = response.content.decode()
    assert response.status_code == 403
    assert "You may not open this page" in html and 'class="main-nav"' in html
    forbidden = [r for r in caplog.records if r.name == "django.request" and "Forbidden" in r.getMessage()]
    assert forbidden, "the 403 was not logged at all"
    assert all(r.exc_info is None for r in forbidden), "a 403 was logged with its traceback"


def test_500_renders_without_a_request_and_offers_the_way_back() -> None:
    html = render_to_string("500.html")  # as Django's server_error renders it: no context at all
    assert "Something went wrong on our side" in html
    assert 'href="/servers/"' in html and 'href="/models/"' in html
