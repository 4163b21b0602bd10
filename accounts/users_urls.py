from django.urls import path

from accounts import users_views

app_name = "users"

urlpatterns = [
    path("", users_views.user_list, name="list"),
    path("<int:pk>/approve/", users_views.user_approve, name="approve"),
    path("<int:pk>/disable/", users_views.user_disable, name="disable"),
    path("<int:pk>/enable/", users_views.user_enable, name="enable"),
    path("<int:pk>/grant-admin/", users_views.user_grant_admin, name="grant_admin"),
    path("<int:pk>/revoke-admin/", users_views.user_revoke_admin, name="revoke_admin"),
    path("<int:pk>/rights/", users_views.user_rights, name="rights"),
    path("<int:pk>/limits/", users_views.user_limits, name="limits"),
    path("<int:pk>/password/", users_views.user_password, name="password"),
    path("<int:pk>/delete/", users_views.user_delete, name="delete"),
]
