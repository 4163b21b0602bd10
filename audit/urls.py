from __future__ import annotations

from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.audit, name="audit"),
    path("activity/", views.activity, name="activity"),
]
