"""gunicorn settings for `make run` and the installed service."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('MLXM_WEB_PORT', os.environ.get('PORT', '8000'))}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# ASGI, with gunicorn's own asyncio worker: a `/v1/` stream waits on its model server without a
# thread, so one worker relays hundreds of streams; page views (sync) run in asgiref's threads.
# Chosen over uvicorn's worker and gthread by measurement (docs/performance.md, "Serving").
worker_class = os.environ.get("WEB_WORKER_CLASS", "asgi")  # bench: uvicorn.workers.UvicornWorker
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = 60
# An open dashboard polls every 5 s: it keeps its connection instead of opening one per poll.
keepalive = 10
# The dashboard's poll sends the version of what the page shows in its URL, some 24 bytes a card
# (servers/dashboard/render.py, VERSION_MAX_LENGTH): the longest request line gunicorn allows, not 4094.
limit_request_line = 8190
accesslog = "-"
logger_class = "mlxmanager.gunicorn_logging.QuietPollsLogger"
# gunicorn's control socket lives in one fixed place per user; two instances (a test stack beside
# `make run`) would fight over it, and nothing here uses it.
control_socket_disable = True


def on_starting(server: object) -> None:
    """Check the settings (the data directory above all) in the master, before any worker: a
    failure there is one clear message and a non-zero exit, not workers failing to boot forever."""
    import mlxmanager.settings  # noqa: F401


def post_worker_init(worker: object) -> None:
    """Once the worker has loaded the app: move what it loaded (Django, the URL and template
    machinery, every module) out of the garbage collector's sight. Its full collections scanned all
    of it, pausing a request for 170 ms every few hundred; 54 ms after this (gc.freeze, Python docs)."""
    import gc

    gc.collect()
    gc.freeze()


def worker_exit(server: object, worker: object) -> None:
    """Write the usage records and server uses the worker still holds (gateway/recorder.py)
    before it goes: a SIGTERM loses none."""
    from gateway.recorder import recorder

    recorder.flush()
