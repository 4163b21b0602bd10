"""LiteLLM's proxy beside the gateway, in the same run and against the same model server: installed
once into a venv of its own (`.bench-venv/`, never the app's `.venv`) at the version pinned in
bench/requirements-litellm.txt, then started as `litellm --config <generated yaml>`.

Where it cannot be installed or started, `ensure_litellm()` says why and the bench skips its column."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from testing.net import free_port
from testing.stack import wait_for_http

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-litellm.txt"
VENV = Path(os.environ.get("MLXM_BENCH_VENV", REPO / ".bench-venv"))
STAMP = VENV / ".installed"
INSTALL_TIMEOUT = 1200.0  # seconds
WORKERS = int(os.environ.get("WEB_CONCURRENCY", "2"))  # as many as gunicorn gives the app

CONFIG = """model_list:
  - model_name: {name}
    litellm_params:
      model: openai/default_model
      api_base: {api_base}
      api_key: none
litellm_settings:
  telemetry: false
  drop_params: false
general_settings:
  master_key: {master_key}
"""


@dataclass(frozen=True)
class Installed:
    litellm: Path | None  # the `litellm` command, or None when it could not be installed
    note: str  # why not, or what the install cost
    install_seconds: float | None = None  # None: installed by an earlier run


def _wanted() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_litellm() -> Installed:
    """The venv with the pinned LiteLLM, made now (timed) unless an earlier run made it."""
    command = VENV / "bin" / "litellm"
    if STAMP.is_file() and command.is_file():
        wanted, _, cost = STAMP.read_text().strip().partition(" ")
        if wanted == _wanted():
            return Installed(command, f"installed by an earlier run ({cost or 'cost not recorded'})")
    began = time.perf_counter()
    try:
        if not (VENV / "bin" / "python").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
        )  # fmt: skip
    except subprocess.CalledProcessError as failed:
        last = (failed.stderr or failed.stdout or "").strip().splitlines()[-3:]
        return Installed(None, f"LiteLLM could not be installed ({' / '.join(last)[:400]}): column skipped")
    except subprocess.TimeoutExpired:
        return Installed(None, f"LiteLLM's install took over {INSTALL_TIMEOUT:g} s: column skipped")
    seconds = time.perf_counter() - began
    if not command.is_file():
        return Installed(None, "LiteLLM installed no `litellm` command: column skipped")
    cost = f"{seconds:.0f} s, {_size_mb(VENV):.0f} MB in {VENV.name}/"
    STAMP.write_text(f"{_wanted()} {cost}\n")
    return Installed(command, f"installed now: {cost}", seconds)


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def version() -> str:
    line = REQUIREMENTS.read_text().strip().splitlines()[-1]
    return line.split("==", 1)[-1]


class LiteLLMProxy:
    """`litellm --config` on a free loopback port, relaying model `name` to `api_base` (the model
    server's /v1), behind a master key as the gateway is behind its API keys, with as many
    workers as gunicorn gives the app (WEB_CONCURRENCY, gunicorn.conf.py)."""

    def __init__(self, command: Path, root: Path, *, name: str, api_base: str) -> None:
        self.port = free_port()
        self.key = "sk-bench-" + secrets.token_hex(8)
        self.config = root / "litellm.yaml"
        self.config.write_text(CONFIG.format(name=name, api_base=api_base, master_key=self.key))
        self.log_path = root / "litellm.log"
        # Only what it needs: no DATABASE_URL (it would try to use it), no network look-ups.
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
        env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"})
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(command), "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port),
                 "--num_workers", str(WORKERS)],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180.0) -> None:
        try:
            wait_for_http(f"{self.url}/health/liveliness", timeout=timeout)
        except TimeoutError:
            tail = self.log_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"LiteLLM did not start: {tail}") from None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
