from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def local_models(request: HttpRequest) -> HttpResponse:
    return render(request, "library/local.html")
