"""`mlxm`: MLX Manager from a shell, through /api/v1/ only (no Django here).

    mlxm ps | ls | start NAME [--wait] | stop NAME | pull REPO | logs NAME [-f]

The server and key come from MLXM_URL and MLXM_API_KEY, else from the config file
(MLXM_CONFIG, default ~/.config/mlxm/config.toml) with `url = "..."` and `api_key = "..."`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx

DEFAULT_CONFIG = Path("~/.config/mlxm/config.toml")
POLL_SECONDS = 0.5
BAR_WIDTH = 30
FINISHED = {"completed", "failed", "cancelled"}


class CliError(Exception):
    """A message for the person at the shell; the command exits 1."""


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str


def load_config(environ: dict[str, str] | os._Environ[str] = os.environ) -> Config:
    path = Path(environ.get("MLXM_CONFIG") or DEFAULT_CONFIG).expanduser()
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            stored = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise CliError(f"{path}: {exc}") from None
    url = environ.get("MLXM_URL") or stored.get("url") or "http://127.0.0.1:8000"
    key = environ.get("MLXM_API_KEY") or stored.get("api_key") or ""
    if not key:
        raise CliError(f"No API key: set MLXM_API_KEY or api_key in {path} (create one under Account → API keys).")
    return Config(url=str(url).rstrip("/"), api_key=str(key))


class Api:
    def __init__(self, config: Config, transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(
            base_url=config.url + "/api/v1",
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=30.0,
            transport=transport,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"Cannot reach {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:200]
            raise CliError(f"{detail} (HTTP {response.status_code})")
        return response.json() if response.content else None

    def profile_id(self, name: str) -> int:
        """A profile by name or alias, ignoring case."""
        for profile in self.call("GET", "/profiles/"):
            names = [profile["name"], *(a.strip() for a in profile["aliases"].split(",") if a.strip())]
            if name.lower() in (n.lower() for n in names):
                return int(profile["id"])
        raise CliError(f"No profile is called {name!r} (see `mlxm ps`).")


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def cmd_ps(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    servers = api.call("GET", "/servers/")
    rows = [["NAME", "STATE", "PORT", "PID", "MEMORY"]]
    rows += [
        [s["name"], s["state"], str(s["port"]), str(s["pid"] or "-"), human_bytes(s["rss_bytes"])] for s in servers
    ]
    table(rows, out)
    return 0


def cmd_ls(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    models = api.call("GET", "/models/local")
    rows = [["MODEL", "SIZE", "QUANTIZATION"]]
    rows += [[m["name"], human_bytes(m["size"]), m["facts"]["quantization"] or "-"] for m in models]
    table(rows, out)
    return 0


def cmd_start(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    pk = api.profile_id(args.name)
    server = api.call("POST", f"/servers/{pk}/start")
    out.write(f"{server['name']}: starting\n")
    if args.wait:
        while server["state"] not in ("running", "fatal"):
            time.sleep(POLL_SECONDS)
            server = api.call("GET", f"/servers/{pk}")
        out.write(f"{server['name']}: {server['state']} {server['base_url']}\n")
        return 0 if server["state"] == "running" else 1
    return 0


def cmd_stop(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    server = api.call("POST", f"/servers/{api.profile_id(args.name)}/stop")
    out.write(f"{server['name']}: stopping\n")
    return 0


def progress_line(download: dict[str, Any]) -> str:
    done, total = download["bytes_done"], download["bytes_total"]
    if total:
        filled = int(BAR_WIDTH * min(done, total) / total)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        amount = f"{100 * done / total:5.1f}% {human_bytes(done)}/{human_bytes(total)}"
    else:
        bar, amount = "-" * BAR_WIDTH, human_bytes(done)
    return f"{download['repo_id']} [{bar}] {amount} {download['state']}"


def cmd_pull(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    download = api.call("POST", "/models/downloads", json={"repo_id": args.repo})
    interactive = out.isatty()
    last = ""
    while True:
        line = progress_line(download)
        if interactive:
            out.write("\r" + line)
        elif line != last:
            out.write(line + "\n")
        out.flush()
        last = line
        if download["state"] in FINISHED:
            break
        time.sleep(POLL_SECONDS)
        download = api.call("GET", f"/models/downloads/{download['id']}")
    if interactive:
        out.write("\n")
    if download["state"] != "completed":
        raise CliError(f"{args.repo}: {download['state']} {download['error']}".rstrip())
    out.write(f"{args.repo}: downloaded\n")
    return 0


class CtrlC:
    """Whether Ctrl-C was pressed. Python drops a KeyboardInterrupt raised while a finalizer runs
    (the garbage collector closing an HTTP response, say), and `mlxm logs -f` then followed on
    (seen once in CI under load): so the press is also remembered, and the loop ends at its next turn."""

    pressed = False


def _on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    CtrlC.pressed = True
    raise KeyboardInterrupt


def cmd_logs(api: Api, args: argparse.Namespace, out: TextIO, sleep: Callable[[float], None] = time.sleep) -> int:
    pk = api.profile_id(args.name)
    chunk = api.call("GET", f"/servers/{pk}/log")
    while True:
        out.write(chunk["text"])
        out.flush()
        if not args.follow:
            return 0
        sleep(POLL_SECONDS * 2)
        if CtrlC.pressed:
            raise KeyboardInterrupt
        params = {"offset": chunk["offset"]} | ({"inode": chunk["inode"]} if chunk["inode"] is not None else {})
        chunk = api.call("GET", f"/servers/{pk}/log", params=params)


COMMANDS: dict[str, Callable[[Api, argparse.Namespace, TextIO], int]] = {
    "ps": cmd_ps,
    "ls": cmd_ls,
    "start": cmd_start,
    "stop": cmd_stop,
    "pull": cmd_pull,
    "logs": cmd_logs,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mlxm", description="MLX Manager from the shell (through /api/v1/).")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("ps", help="servers and their state")
    sub.add_parser("ls", help="models on the machine")
    start = sub.add_parser("start", help="start a profile's server")
    start.add_argument("name")
    start.add_argument("--wait", action="store_true", help="until it runs (or fails)")
    sub.add_parser("stop", help="stop a profile's server").add_argument("name")
    sub.add_parser("pull", help="download a model from the Hub, with progress").add_argument("repo")
    logs = sub.add_parser("logs", help="a server's log")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what is written")
    return top


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        return COMMANDS[args.command](Api(load_config()), args, out)
    except CliError as exc:
        sys.stderr.write(f"mlxm: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
