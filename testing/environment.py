"""Loaded by pytest before anything else (`-p testing.environment`): every test run gets its own
data directory and Hugging Face home, and huggingface_hub is pointed at the hub stand-in's port
before it reads its environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from testing.net import free_port

_root = Path(tempfile.mkdtemp(prefix="mlxm-test-"))
os.environ["MLXM_DATA_DIR"] = str(_root / "data")
os.environ["HF_HOME"] = str(_root / "hf-home")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Each pytest process (and each xdist worker, which inherits the controller's environment) runs its own
# hub stand-in, so each picks its own port.
os.environ["MLXM_TEST_HUB_PORT"] = str(free_port())
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{os.environ['MLXM_TEST_HUB_PORT']}"
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ["MLXM_TEST_FAST_PASSWORD_HASH"] = "1"  # a quarter of a second a password otherwise
# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
os.environ.pop("DEBUG", None)
