"""Django settings for MLX Manager, read from the environment (django-environ, `.env` optional)."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp import constants as csp_constants

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

MLXM_DATA_DIR = Path(env.str("MLXM_DATA_DIR", default="~/.mlx-manager")).expanduser()
MLXM_LOG_DIR = MLXM_DATA_DIR / "logs"


def _ensure_data_dir(path: Path) -> None:
    """A clear one-line exit (no traceback deep in sqlite) when the data directory is unusable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"MLX Manager: cannot create the data directory {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):  # checked before `logs/`, which would only say "cannot create"
        raise SystemExit(
            f"MLX Manager: the data directory {path} is not writable. "
            "Fix its permissions or point MLXM_DATA_DIR somewhere writable."
        )
    try:
        (path / "logs").mkdir(exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"MLX Manager: cannot create {path / 'logs'} in the data directory: {exc.strerror}") from None


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated on first start and kept (mode 0600)."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        # Written aside, then linked into place: when the web server and the supervisor start
        # together, one link wins and nobody reads a half-written key.
        draft = data_dir / f".secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


_ensure_data_dir(MLXM_DATA_DIR)
SECRET_KEY = _secret_key(MLXM_DATA_DIR)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "core",
    "accounts",
    "audit",
    "nodes",
    "profiles",
    "library",
    "servers",
    "system",
    "gateway",
    "monitoring",
    "api",
    "ninja",  # serves its docs page's Swagger UI from static files, not a CDN
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "corsheaders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # answers a /v1/ preflight before the login check
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.ApprovedLoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "csp.middleware.CSPMiddleware",
]

# CORS for browser apps on other origins, on `/v1/` only (never the pages), none unless set. No
# credentials: a cross-origin app sends a key, never this site's session cookie.
CORS_ALLOWED_ORIGINS = env.list("MLXM_CORS_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/v1/.*$"
CORS_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
CORS_ALLOW_HEADERS = (
    *("accept", "authorization", "content-type", "user-agent", "x-requested-with"),
    *("x-api-key", "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access"),
    *("openai-organization", "openai-project", "openai-beta"),
    # what the openai and anthropic JavaScript SDKs send from a browser
    *("x-stainless-os", "x-stainless-lang", "x-stainless-package-version", "x-stainless-runtime"),
    *("x-stainless-runtime-version", "x-stainless-arch", "x-stainless-retry-count", "x-stainless-timeout"),
    *("x-stainless-async", "x-stainless-helper-method", "x-stainless-stream-helper"),
)
# What a browser app may read of an answer: when to retry, and its limits (gateway/limits/headers.py).
CORS_EXPOSE_HEADERS = (
    "retry-after",
    "x-should-retry",
    *(f"x-ratelimit-{what}-{unit}" for unit in ("requests", "tokens") for what in ("limit", "remaining", "reset")),
    *(
        f"anthropic-ratelimit-{unit}-{what}"
        for unit in ("requests", "tokens")
        for what in ("limit", "remaining", "reset")
    ),
)
CORS_PREFLIGHT_MAX_AGE = 600

# Content-Security-Policy on every page: scripts and styles from this site only, no inline code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF],
        "style-src": [csp_constants.SELF],
        "img-src": [csp_constants.SELF, "data:"],
        "connect-src": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "base-uri": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
        "frame-ancestors": [csp_constants.NONE],
    }
}

ROOT_URLCONF = "mlxmanager.urls"
WSGI_APPLICATION = "mlxmanager.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
            ],
            "builtins": ["core.formatting"],  # the human_bytes filter everywhere
        },
    },
]

# SQLite by default; the web and the supervisor write the same file, hence WAL, a busy timeout
# and IMMEDIATE transactions (a writer takes the lock up front instead of failing on upgrade).
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{MLXM_DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so that a supervisor started by a test sees the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(MLXM_DATA_DIR / "test-db.sqlite3")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# One connection per worker thread, kept between requests: opening one costs more than a whole
# polled partial (SQLite re-reads the schema and re-runs the PRAGMAs), checked before reuse.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.EmailBackend",
]
# The test suite only (testing/environment.py sets it, and the servers the tests start inherit it):
# a fast password hash, since the default costs a quarter of a second a password. Never set it
# elsewhere: MD5 offers no protection to a stolen database.
if env.bool("MLXM_TEST_FAST_PASSWORD_HASH", default=False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "servers:dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

# Brute-force protection: lock an account *from one address* for a while after repeated failures.
# The combination means strangers' wrong passwords for someone's email cannot lock them out, and a
# guesser trying many emails from one address locks only those pairs. Unlock by hand with
# `manage.py axes_reset_username EMAIL` or `axes_reset_ip ADDRESS`.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.lockout"
AXES_CLIENT_IP_CALLABLE = "accounts.backends.axes_client_ip"
# The login form's field is `username` (Django's), not the model's USERNAME_FIELD (`email`).
AXES_USERNAME_CALLABLE = "accounts.backends.axes_username"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None

X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"client_errors": {"()": "mlxmanager.logfilters.ClientErrorsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},  # a line per upstream request of the gateway otherwise
        "django.request": {"filters": ["client_errors"]},
    },
}

# --- MLX Manager ---
# The Hugging Face cache that huggingface_hub uses (HF_HOME / HF_HUB_CACHE are read by the library).
from huggingface_hub import constants as _hf_constants  # noqa: E402

HF_HUB_CACHE = Path(_hf_constants.HF_HUB_CACHE)
# Extra folders holding model folders (config.json + *.safetensors), outside the HF cache.
MLXM_MODEL_DIRS = [Path(p).expanduser() for p in env.list("MLXM_MODEL_DIRS", default=[])]
# First port suggested for a new profile.
MLXM_PORT_BASE = env.int("MLXM_PORT_BASE", default=8080)
# Memory kept free for the system when deciding whether a model fits (bytes).
MLXM_MEMORY_HEADROOM = env.int("MLXM_MEMORY_HEADROOM", default=2 * 1024**3)
# Seconds a started server has to answer GET /health with 200 before it counts as a failed start.
MLXM_START_TIMEOUT = env.float("MLXM_START_TIMEOUT", default=300.0)
MLXM_STOP_TIMEOUT = env.float("MLXM_STOP_TIMEOUT", default=10.0)
# A server's log is rotated (copied to .1, .2, ... and truncated) once it grows past this many bytes.
MLXM_LOG_MAX_BYTES = env.int("MLXM_LOG_MAX_BYTES", default=10 * 1024**2)
# Seconds a /v1/ request for a stopped on-demand model waits for it to start before a 504.
MLXM_ON_DEMAND_TIMEOUT = env.float("MLXM_ON_DEMAND_TIMEOUT", default=600.0)
# Seconds between an idle supervisor's looks at the database (and memory samples); a wake-up from
# the web side (a datagram, or a PostgreSQL NOTIFY from another node) cuts the wait short.
MLXM_SUPERVISOR_POLL = env.float("MLXM_SUPERVISOR_POLL", default=5.0)
# Seconds after which the supervisor's heartbeat counts as stale.
MLXM_HEARTBEAT_STALE = env.float("MLXM_HEARTBEAT_STALE", default=15.0)
# Seconds a Hub search or model page may wait for the Hub before saying it cannot be reached.
MLXM_HUB_TIMEOUT = env.float("MLXM_HUB_TIMEOUT", default=15.0)
# This machine's name among the nodes (machines sharing one database): its supervisor acts on
# this node's servers and downloads only; the `node` label of the metrics.
MLXM_NODE_NAME = env.str("MLXM_NODE_NAME", default=socket.gethostname())
# Where the other nodes reach this node's web app (e.g. http://studio.local:8000); blank on one machine.
MLXM_NODE_URL = env.str("MLXM_NODE_URL", default="")
# Shared by the nodes: authenticates requests one node's gateway forwards to another's.
MLXM_NODE_SECRET = env.str("MLXM_NODE_SECRET", default="")
# Other nodes' gateways forward requests to MLXM_NODE_URL: its host name is one this app answers to.
if _node_host := urlsplit(MLXM_NODE_URL).hostname:
    ALLOWED_HOSTS.append(f"[{_node_host}]" if ":" in _node_host else _node_host)
# Days the gateway keeps its usage records.
MLXM_USAGE_RETENTION_DAYS = env.int("MLXM_USAGE_RETENTION_DAYS", default=90)
# Seconds the gateway waits for a model server's answer (or its next streamed token) before a 504.
MLXM_GATEWAY_TIMEOUT = env.float("MLXM_GATEWAY_TIMEOUT", default=300.0)
# The largest request body read (Django's 2.5 MB default is less than one photo sent inline to a
# vision model); a /v1/ request over it is a 400 in its API's shape (gateway.views.parse_body).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MLXM_MAX_BODY_BYTES", default=32 * 1024**2)
# Seconds a /v1/ request may wait for its turn in a model server's fair queue (then 503, Retry-After).
MLXM_QUEUE_TIMEOUT = env.float("MLXM_QUEUE_TIMEOUT", default=120.0)
# Requests one person may have waiting for one model server (more: 429, Retry-After).
MLXM_QUEUE_MAX_PER_PERSON = env.int("MLXM_QUEUE_MAX_PER_PERSON", default=64)
