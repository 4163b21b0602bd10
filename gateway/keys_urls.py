from django.urls import path

from gateway import keys_views

app_name = "keys"

urlpatterns = [
    path("", keys_views.key_list, name="list"),
    path("new/", keys_views.key_new, name="new"),
    path("<int:key_id>/revoke/", keys_views.key_revoke_view, name="revoke"),
    path("use/<int:profile_id>/", keys_views.use_it, name="use_it"),
]
