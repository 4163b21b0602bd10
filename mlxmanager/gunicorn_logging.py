"""gunicorn's access log without the htmx polls: the pages poll every second or few, and a line
for each would bury everything else. LOG_LEVEL=DEBUG logs them again."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger


class QuietPollsLogger(Logger):
    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if _is_poll(environ) and os.environ.get("LOG_LEVEL", "").upper() != "DEBUG":
            return
        super().access(resp, req, environ, request_time)


def _is_poll(environ: dict[str, Any]) -> bool:
    """An htmx GET for a fragment (a poll, or a search as you type); page loads and forms are logged."""
    return environ.get("REQUEST_METHOD") == "GET" and environ.get("HTTP_HX_REQUEST") == "true"
