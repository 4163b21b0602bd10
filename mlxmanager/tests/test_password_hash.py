"""The tests hash passwords fast (testing/environment.py); the app itself never does unless told."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings


def _first_hasher(env: dict[str, str]) -> str:
    code = "import django; django.setup(); from django.conf import settings; print(settings.PASSWORD_HASHERS[0])"
    env = {**env, "DJANGO_SETTINGS_MODULE": "mlxmanager.settings"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=settings.BASE_DIR, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_app_hashes_passwords_with_djangos_default_unless_testing() -> None:
    app_env = {k: v for k, v in os.environ.items() if k != "MLXM_TEST_FAST_PASSWORD_HASH"}
    assert _first_hasher(app_env) == "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    assert _first_hasher(dict(os.environ)) == "django.contrib.auth.hashers.MD5PasswordHasher"
