from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.middleware import public


@public
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for monitors: says whether the database answers, and nothing else."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return JsonResponse({"ok": True})
    except Exception:
        return JsonResponse({"ok": False}, status=503)
