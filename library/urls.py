from django.urls import path

from library import views

app_name = "library"

urlpatterns = [
    path("", views.local_models, name="local"),
    path("search/", views.search, name="search"),
    path("hub/<path:repo_id>/", views.hub_model, name="hub_model"),
    path("download/", views.download, name="download"),
    path("downloads/", views.downloads, name="downloads"),
    path("downloads/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("downloads/<int:pk>/retry/", views.retry, name="retry"),
    path("downloads/<int:pk>/dismiss/", views.dismiss, name="dismiss"),
    path("delete/", views.delete, name="delete"),
    path("folders/", views.folder_add, name="folder_add"),
    path("folders/<int:pk>/remove/", views.folder_remove, name="folder_remove"),
]
