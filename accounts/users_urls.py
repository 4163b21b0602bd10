from django.urls import path

from accounts import users_views

app_name = "users"

urlpatterns = [
    path("", users_views.user_list, name="list"),
]
