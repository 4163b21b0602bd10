from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views
from accounts.middleware import public

app_name = "accounts"

urlpatterns = [
    path("register/", views.register, name="register"),
    path("login/", views.LoginView.as_view(), name="login"),
    # Open to everyone signed in, including pending and disabled accounts: leaving is always allowed.
    path("logout/", public(auth_views.LogoutView.as_view()), name="logout"),
    path("pending/", views.pending, name="pending"),
    path("", views.account, name="account"),
]
