"""A fresh virtual environment, as a user of a package makes one: nothing of the app's .venv, its
checkout or its settings is importable there (`pip install` in it reaches the machine's index)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fresh_venv(path: Path) -> dict[str, str]:
    """Makes the venv at `path`; returns an environment whose PATH starts with its bin/."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"}}
    return env | {"PATH": f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
