from django.urls import path

from servers import views

app_name = "servers"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("<int:profile_id>/", views.server_detail, name="detail"),
    path("<int:profile_id>/state/", views.server_state, name="state"),
    path("<int:profile_id>/card/", views.server_card, name="card"),
    path("<int:profile_id>/start/", views.server_action, {"action": "start"}, name="start"),
    path("<int:profile_id>/stop/", views.server_action, {"action": "stop"}, name="stop"),
    path("<int:profile_id>/restart/", views.server_action, {"action": "restart"}, name="restart"),
    path("<int:profile_id>/log/", views.server_log, name="log"),
    path("<int:profile_id>/log/download/", views.server_log_download, name="log_download"),
    path("<int:profile_id>/chat/", views.server_chat, name="chat"),
]
