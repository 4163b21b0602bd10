from django.urls import path

from system import views as system_views

app_name = "system"

urlpatterns = [
    path("", system_views.system, name="system"),
]
