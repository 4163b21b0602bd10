from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from mlxmanager.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="servers:dashboard"), name="home"),
    path("healthz", healthz, name="healthz"),
    path("", include("gateway.page_urls")),  # accounts/keys/, usage/: before accounts/
    path("accounts/", include("accounts.urls")),
    path("users/", include("accounts.users_urls")),
    path("profiles/", include("profiles.urls")),
    path("servers/", include("servers.urls")),
    path("models/", include("library.urls")),
    path("system/", include("system.urls")),
    path("v1/", include("gateway.urls")),
    path("api/v1/", include(("api.urls", "api"))),
    path("", include("monitoring.urls")),
    path("", include("audit.urls")),
    path("admin/", admin.site.urls),
]
