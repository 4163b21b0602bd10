"""The gateway's pages, mounted by the gateway itself: API keys (under the account) and usage.
The API it serves is in gateway/urls.py, under /v1/."""

from django.urls import include, path

from gateway.usage_views import usage

urlpatterns = [
    path("accounts/keys/", include("gateway.keys_urls")),
    path("usage/", usage, name="usage"),
]
