"""`mlxm` is a package of its own: `pip install ./mlxm` into a fresh virtual environment (no Django
there) gives an `mlxm` command that talks to the live app (gunicorn, as `make run` serves it)."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path
from typing import Any

from accounts.models import User
from gateway.services import key_create
from profiles.models import ServerProfile
from testing.net import free_port
from testing.supervisor import BASE_DIR
from testing.venv import fresh_venv
from testing.web import WebServer


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_pip_install_gives_an_mlxm_command_without_django(
    transactional_db: Any, web_server: WebServer, make_user: Any, tmp_path: Path
) -> None:
    venv, home = tmp_path / "venv", tmp_path / "home"
    home.mkdir()
    env = fresh_venv(venv)
    installed = run([str(venv / "bin" / "pip"), "install", str(BASE_DIR / "mlxm")], env, home)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    where = run([str(venv / "bin" / "python"), "-c", "import mlxm, httpx; print(mlxm.__file__)"], env, home)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the installed copy, not the checkout's
    no_django = run([str(venv / "bin" / "python"), "-c", "import django"], env, home)
    assert no_django.returncode == 1 and "No module named 'django'" in no_django.stderr
    helped = run(["mlxm", "--help"], env, home)
    assert helped.returncode == 0 and "{ps,ls,start,stop,pull,logs}" in helped.stdout, helped.stderr

    admin: User = make_user("admin@example.com", admin=True)
    secret = key_create(user=admin, name="script", may_manage=True).secret
    port = free_port()
    ServerProfile.objects.create(name="tiny", model="/nowhere/tiny", port=port)
    web_server.start()
    keyed = env | {"MLXM_URL": web_server.url, "MLXM_API_KEY": secret, "MLXM_CONFIG": str(home / "none.toml")}
    ps = run(["mlxm", "ps"], keyed, home)
    assert ps.returncode == 0, ps.stderr
    assert [line.split() for line in ps.stdout.splitlines()] == [
        ["NAME", "STATE", "PORT", "PID", "MEMORY"],
        ["tiny", "stopped", str(port), "-", "-"],
    ]
    refused = run(["mlxm", "ps"], keyed | {"MLXM_API_KEY": "mlxm_wrong"}, home)
    assert refused.returncode == 1 and "(HTTP 401)" in refused.stderr


def test_the_package_pins_the_httpx_the_app_is_tested_with() -> None:
    package = tomllib.loads((BASE_DIR / "mlxm" / "pyproject.toml").read_text())["project"]
    pinned = [line for line in (BASE_DIR / "requirements.txt").read_text().splitlines() if line.startswith("httpx==")]
    assert package["dependencies"] == pinned and package["scripts"] == {"mlxm": "mlxm.cli:main"}
