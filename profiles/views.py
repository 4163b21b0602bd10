from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from profiles.models import ServerProfile


def profile_list(request: HttpRequest) -> HttpResponse:
    return render(request, "profiles/list.html", {"profiles": ServerProfile.objects.all()})
