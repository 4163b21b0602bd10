from django.urls import path

from gateway import views

app_name = "gateway"

urlpatterns = [
    path("models", views.models, name="models"),
    path("chat/completions", views.chat_completions, name="chat_completions"),
    path("completions", views.completions, name="completions"),
    path("messages", views.messages, name="messages"),
]
