"""A fake machine for driving the supervisor's state machine: a clock moved by hand and processes
that exit when the test says so. Same methods as `servers.supervisor.host.RealHost`."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers.supervisor.host import Process

GiB = 1024**3


@dataclass
class FakeProcess:
    pid: int
    argv: list[str]
    create_time: float
    code: int | None = None
    ignore_term: bool = False
    signals: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        return self.code is None

    def exit_code(self) -> int | None:
        return self.code

    def exit(self, code: int) -> None:
        if self.code is None:
            self.code = code


class FakeHost:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.processes: list[FakeProcess] = []
        self.ready_ports: set[int] = set()
        self.port_holders: dict[int, str] = {}
        self.total = 64 * GiB
        self.available = 32 * GiB
        self.folder_sizes: dict[Path, int] = {}
        self.health_calls = 0
        self._next_pid = 4000

    # the clock
    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    # processes
    def spawn(self, argv: Sequence[str], *, log_path: Path) -> FakeProcess:
        self._next_pid += 1
        process = FakeProcess(pid=self._next_pid, argv=list(argv), create_time=self.now)
        self.processes.append(process)
        return process

    def find(self, pid: int, *, create_time: float | None, cmdline: Sequence[str]) -> FakeProcess | None:
        for process in self.processes:
            if process.pid == pid and process.alive() and process.create_time == create_time:
                return process if process.argv == list(cmdline) else None
        return None

    def signal(self, process: Process, sig: int) -> None:
        assert isinstance(process, FakeProcess)
        process.signals.append(sig)
        if sig == signal.SIGKILL:
            process.exit(-signal.SIGKILL)
        elif sig == signal.SIGTERM and not process.ignore_term:
            process.exit(-signal.SIGTERM)

    def alive(self) -> list[FakeProcess]:
        return [p for p in self.processes if p.alive()]

    # the network
    def port_holder(self, host: str, port: int) -> str | None:
        return self.port_holders.get(port)

    def health(self, host: str, port: int, *, timeout: float) -> float | None:
        self.health_calls += 1
        serving = any(p.alive() and str(port) in p.argv for p in self.processes)
        return 1.5 if serving and port in self.ready_ports else None

    # memory
    def memory(self) -> tuple[int, int]:
        return self.total, self.available

    def folder_size(self, folder: Path) -> int:
        return self.folder_sizes.get(folder, 0)

    def usage(self, process: Process) -> tuple[int, float] | None:
        return (100 * 1024**2, 2.5) if process.alive() else None
