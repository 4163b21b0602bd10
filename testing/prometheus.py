"""A real Prometheus server (Debian's `prometheus` package) on 127.0.0.1, scraping the app, for the
metrics tests: its own port, data folder and scrape config, and a helper for its HTTP query API."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.net import free_port
from testing.stack import wait_for_http

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@dataclass
class PrometheusServer:
    """`start()` writes a scrape config for `target` (host:port) with `credentials` (a
    scrape_config's `basic_auth` or `authorization` mapping) and returns once Prometheus is ready."""

    root: Path
    target: str
    credentials: dict[str, Any]
    scrape_seconds: int = 5
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    def config(self) -> dict[str, Any]:
        interval = f"{self.scrape_seconds}s"
        job = {
            "job_name": "mlx-manager",
            "metrics_path": "/metrics",
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": [self.target]}],
            **self.credentials,
        }
        return {"global": {"scrape_interval": interval}, "scrape_configs": [job]}

    def start(self) -> PrometheusServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "prometheus.yml"
        config.write_text(json.dumps(self.config()))  # JSON is YAML
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_http(f"{self.url}/-/ready", timeout=60)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; prometheus said:\n{self.output()[-3000:]}") from None
        return self

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, float]:
        """An instant query's result as {profile label (or ""): value}."""
        result = self.api("query", query=expr)["result"]
        return {r["metric"].get("profile", ""): float(r["value"][1]) for r in result}

    def target_health(self) -> str:
        targets = self.api("targets")["activeTargets"]
        return "; ".join(f"{t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in targets)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
