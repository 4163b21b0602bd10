from django.urls import path

from servers import system_views

app_name = "system"

urlpatterns = [
    path("", system_views.system, name="system"),
]
