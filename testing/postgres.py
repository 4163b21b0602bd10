"""A throwaway PostgreSQL cluster (Debian's `postgresql` package) for the tests: `initdb` in a
temporary folder, started with `pg_ctl` on 127.0.0.1 on a free port, its UNIX socket in that
folder, trust authentication for its one superuser. No system service is involved.

PostgreSQL refuses to run as root; as root (CI), every PostgreSQL program runs as the `postgres`
user (`runuser -u postgres --`) on a folder that user owns.

    python -m testing.postgres run -- <command>    # DATABASE_URL points at a fresh cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testing.net import free_port

INSTALL_HINT = "PostgreSQL is not installed: `apt-get install postgresql` (or `make system-deps`)."
SUPERUSER = "mlxm"
DATABASE = "mlxm"
# A throwaway cluster need not survive a power cut: no fsync makes every test's commits cheaper.
# max_connections: the twenty-concurrent-starts test, several pytest workers, supervisors.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}
# Set by `run` for the command it runs, so that its tests can find (and stop) the same cluster.
ROOT_ENV = "MLXM_TEST_POSTGRES_ROOT"


class PostgresMissing(RuntimeError):
    pass


def bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb (the version is not fixed)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: [int(part) if part.isdigit() else 0 for part in p.parent.name.split(".")],
    )
    if not found:
        raise PostgresMissing(INSTALL_HINT)
    return found[-1]


def as_root() -> bool:
    return os.geteuid() == 0


@dataclass
class PostgresCluster:
    """`start()` makes the cluster on first use and starts it; `stop()` stops it (the data stays);
    `start()` again brings it back on the same port; `destroy()` removes everything."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mlxm-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return self.database_url(DATABASE)

    def database_url(self, name: str) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(bin_dir() / program), *args]
        if as_root():
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, cwd=self.root, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"{self._log_tail()}"
            )
        return result

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def init(self) -> None:
        bin_dir()  # a clear message before anything else when PostgreSQL is missing
        self.root.mkdir(parents=True, exist_ok=True)
        if as_root():
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        settings = {**SETTINGS, "port": str(self.port), "unix_socket_directories": f"'{self.root}'"}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> PostgresCluster:
        if not (self.data_dir / "PG_VERSION").exists():
            self.init()
            self._pg_ctl_start()
            self.create_database(DATABASE)
        else:
            self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (connected clients are cut off, as when the database machine goes away)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def restart_after(self, seconds: float) -> None:
        """Away for `seconds`, then back: what a reboot of the database machine looks like."""
        self.stop()
        time.sleep(seconds)
        self.start()

    def psql(self, sql: str, *, database: str = DATABASE) -> str:
        result = self._run(
            "psql", "-h", str(self.root), "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-Atqc", sql
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new empty database; returns its DATABASE_URL."""
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        return self.database_url(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def run(command: list[str]) -> int:
    """Run `command` with DATABASE_URL pointing at a fresh cluster, then remove the cluster."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        env = {**os.environ, "DATABASE_URL": cluster.url, ROOT_ENV: f"{cluster.root}:{cluster.port}"}
        print(f"PostgreSQL {bin_dir().parent.name} on 127.0.0.1:{cluster.port} ({cluster.root})", flush=True)
        began = time.monotonic()
        status = subprocess.run(command, env=env).returncode
        print(f"On PostgreSQL: {' '.join(command[:3])} ... took {time.monotonic() - began:.0f} s", flush=True)
        return status
    finally:
        cluster.destroy()


def attached() -> PostgresCluster | None:
    """The cluster `run` started for this process, if any."""
    value = os.environ.get(ROOT_ENV, "")
    if not value:
        return None
    root, _, port = value.rpartition(":")
    return PostgresCluster(root=Path(root), port=int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.postgres", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run a command against a throwaway cluster")
    run_parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("run needs a command, e.g. run -- pytest accounts")
    try:
        return run(command)
    except PostgresMissing as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
