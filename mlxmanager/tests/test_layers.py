"""The house rules, read from the source with `ast`: apps depend one way, nothing but the
runsupervisor command reaches into the daemon, and system/ owns the System page and the installer."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lower layers first; an app may import its own layer and those below, never above.
LAYERS = [
    "core",
    "audit",
    "accounts",
    "nodes",
    "library",
    "profiles",
    "servers",
    "system",
    "gateway",
    "monitoring",
    "api",
]
# The audit trail's records sit low (every app records through audit.services), its pages at the
# top: they read accounts and profiles. One folder for the concept, two ranks.
PAGES_AT_THE_TOP = {"audit.views": "monitoring", "audit.urls": "monitoring"}
# `mlxm`, the command-line client, is a package of its own (`pip install ./mlxm`): none of the app.
CLIENT = "mlxm"
CLIENT_IMPORTS = {"httpx", CLIENT}
SUPERVISOR = "servers.supervisor"
SUPERVISOR_CLIENTS = {"servers.management.commands.runsupervisor"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_modules() -> dict[str, Path]:
    return {module_name(path): path for app in LAYERS for path in sorted((ROOT / app).rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` anywhere in the file names (in functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_scan_sees_the_apps_and_their_imports() -> None:
    modules = app_modules()
    assert "servers.supervisor.core" in modules and "library.views" in modules
    assert "servers.models" in imported(modules["servers.views"])


def test_apps_depend_one_way() -> None:
    wrong = []
    for name, path in app_modules().items():
        if ".tests" in name:  # a test may set up the whole stack
            continue
        rank = LAYERS.index(PAGES_AT_THE_TOP.get(name, name.split(".")[0]))
        for target in imported(path):
            top = target.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > rank and target not in PAGES_AT_THE_TOP:
                wrong.append(f"{name} imports {target}")
            if any(is_under(target, page) for page in PAGES_AT_THE_TOP) and name not in PAGES_AT_THE_TOP:
                wrong.append(f"{name} imports the page module {target}")
    assert not wrong, "A lower app imports a higher one:\n" + "\n".join(sorted(wrong))


def test_only_the_runsupervisor_command_imports_the_daemon() -> None:
    wrong = []
    for name, path in app_modules().items():
        if is_under(name, SUPERVISOR) or name in SUPERVISOR_CLIENTS or ".tests" in name:
            continue
        wrong += [f"{name} imports {target}" for target in imported(path) if is_under(target, SUPERVISOR)]
    assert not wrong, "Only runsupervisor may import servers/supervisor/:\n" + "\n".join(sorted(wrong))
    assert any(is_under(t, SUPERVISOR) for t in imported(app_modules()["servers.management.commands.runsupervisor"]))


def test_system_owns_the_system_page_and_the_service_installer() -> None:
    modules = app_modules()
    for name in ("system.views", "system.urls", "system.info", "system.service_install"):
        assert name in modules
    assert "system.management.commands.installservice" in modules
    strays = [
        name
        for name in modules
        if not is_under(name, "system")
        and name.rsplit(".", 1)[-1] in {"installservice", "service_install", "system_info"}
    ]
    assert not strays
    assert (ROOT / "templates" / "system").is_dir()
    urls = (ROOT / "mlxmanager" / "urls.py").read_text()
    assert 'include("system.urls")' in urls


def test_make_test_collects_every_apps_tests() -> None:
    """`make test` runs pytest's `testpaths`: an app missing there has its tests silently left out
    (api/'s were, for a round)."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    with_tests = {path.parent.parent.name for path in ROOT.glob("*/tests/__init__.py")} | {"e2e"}
    assert with_tests <= set(options["testpaths"])


def test_no_app_imports_the_project_package() -> None:
    """`mlxmanager/` is the top: settings, urls, asgi, wsgi and the gunicorn hooks. What apps share
    lives in `core/`, which imports no app (it is the lowest layer)."""
    wrong = []
    for name, path in app_modules().items():
        if ".tests" in name:
            continue
        wrong += [f"{name} imports {target}" for target in imported(path) if is_under(target, "mlxmanager")]
    assert not wrong, "An app imports the project package:\n" + "\n".join(sorted(wrong))
    assert LAYERS[0] == "core"


def test_the_command_line_client_imports_only_httpx_and_the_standard_library() -> None:
    """So that a script user can `pip install ./mlxm` without Django: its modules (not its tests,
    which drive the live app) may import the standard library, httpx and themselves."""
    allowed = set(sys.stdlib_module_names) | CLIENT_IMPORTS
    modules = [path for path in sorted((ROOT / CLIENT).rglob("*.py")) if "tests" not in path.parts]
    assert ROOT / CLIENT / "cli.py" in modules
    wrong = [
        f"{module_name(path)} imports {target}"
        for path in modules
        for target in imported(path)
        if target.split(".")[0] not in allowed
    ]
    assert not wrong, "mlxm must install without the app:\n" + "\n".join(wrong)
