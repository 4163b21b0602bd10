"""The versions a node reports about itself: what its servers run on and what the app is."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def app_version() -> str:
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def node_versions() -> dict[str, str]:
    return {"mlx": package_version("mlx"), "mlx-lm": package_version("mlx-lm"), "app": app_version()}
