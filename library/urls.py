from django.urls import path

from library import views

app_name = "library"

urlpatterns = [
    path("", views.local_models, name="local"),
]
