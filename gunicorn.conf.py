"""gunicorn settings for `make run` and the installed service."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('MLXM_WEB_PORT', os.environ.get('PORT', '8000'))}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
accesslog = "-"
logger_class = "mlxmanager.gunicorn_logging.QuietPollsLogger"
# gunicorn's control socket lives in one fixed place per user; two instances (a test stack beside
# `make run`) would fight over it, and nothing here uses it.
control_socket_disable = True


def on_starting(server: object) -> None:
    """Check the settings (the data directory above all) in the master, before any worker: a
    failure there is one clear message and a non-zero exit, not workers failing to boot forever."""
    import mlxmanager.settings  # noqa: F401
