from django.urls import path, re_path

from gateway import catalog_views, count_tokens, embeddings, views

app_name = "gateway"

urlpatterns = [
    path("models", catalog_views.models, name="models"),
    path("models/<path:model_id>", catalog_views.model_detail, name="model"),
    path("chat/completions", views.chat_completions, name="chat_completions"),
    path("completions", views.completions, name="completions"),
    path("messages", views.messages, name="messages"),
    path("messages/count_tokens", count_tokens.count_tokens, name="count_tokens"),
    path("responses", views.responses, name="responses"),
    path("embeddings", embeddings.embeddings, name="embeddings"),
    path("rerank", embeddings.rerank, name="rerank"),
    re_path(r"^(?P<rest>.*)$", catalog_views.not_found, name="not_found"),  # JSON, never Django's HTML 404
]
