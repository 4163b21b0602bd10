from django.urls import path

from servers import views

app_name = "servers"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
