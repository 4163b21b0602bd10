from django.urls import path

from profiles import views

app_name = "profiles"

urlpatterns = [
    path("", views.profile_list, name="list"),
    path("new/", views.profile_new, name="new"),
    path("check/port/", views.check_port, name="check_port"),
    path("check/model/", views.check_model_view, name="check_model"),
    path("<int:pk>/", views.profile_detail, name="detail"),
    path("<int:pk>/edit/", views.profile_edit, name="edit"),
    path("<int:pk>/duplicate/", views.profile_duplicate, name="duplicate"),
    path("<int:pk>/delete/", views.profile_delete, name="delete"),
]
