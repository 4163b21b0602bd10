"""A fake machine for driving the supervisor's state machine: a clock moved by hand and processes
that exit when the test says so. Same methods as `servers.supervisor.host.RealHost`."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from servers.supervisor.host import HealthAnswer, Process
from servers.supervisor.ready import READY_REQUEST, ReadyRequest

GiB = 1024**3


@dataclass
class FakeProcess:
    pid: int
    argv: list[str]
    create_time: float
    code: int | None = None
    ignore_term: bool = False
    marker: str = ""
    signals: list[int] = field(default_factory=list)

    def alive(self) -> bool:
        return self.code is None

    def exit_code(self) -> int | None:
        return self.code

    def cmdline(self) -> list[str]:
        return self.argv

    def exit(self, code: int) -> None:
        if self.code is None:
            self.code = code


class FakeHost:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.processes: list[FakeProcess] = []
        self.ready_ports: set[int] = set()  # /health answers 200 there
        self.refusing_ports: set[int] = set()  # /health answers 503 there (mlx-lm after a failed load)
        self.hung_ports: set[int] = set()  # /health never answers there (a frozen server): see answer_hung
        self.hung_probes: list[Future[HealthAnswer]] = []
        self.generation_error: str | None = None  # what the one-token generation answers (None: a token)
        self.pending_generations: list[Future[str | None]] = []  # while set, answers wait for finish_loading
        self.hold_generations = False
        self.generation_calls = 0
        self.ready_requests: list[ReadyRequest] = []
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
    def spawn(self, argv: Sequence[str], *, log_path: Path, marker: str = "") -> FakeProcess:
        self._next_pid += 1
        process = FakeProcess(pid=self._next_pid, argv=list(argv), create_time=self.now, marker=marker)
        self.processes.append(process)
        return process

    def find(self, pid: int, *, create_time: float | None, cmdline: Sequence[str]) -> FakeProcess | None:
        for process in self.processes:
            if process.pid == pid and process.alive() and process.create_time == create_time:
                return process if process.argv == list(cmdline) else None
        return None

    def find_marked(self, marker: str) -> FakeProcess | None:
        return next((p for p in self.processes if p.alive() and p.marker == marker), None)

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

    def health(self, host: str, port: int, *, timeout: float) -> HealthAnswer:
        self.health_calls += 1
        serving = any(p.alive() and str(port) in p.argv for p in self.processes)
        if serving and port in self.refusing_ports:
            return HealthAnswer(status=503, ms=1.0)
        return HealthAnswer(status=200, ms=1.5) if serving and port in self.ready_ports else HealthAnswer(status=None)

    def health_soon(self, host: str, port: int, *, timeout: float) -> Future[HealthAnswer]:
        """Answered at once (the fake clock has no threads to wait for), except on a hung port."""
        future: Future[HealthAnswer] = Future()
        if port in self.hung_ports:
            self.health_calls += 1
            self.hung_probes.append(future)
        else:
            future.set_result(self.health(host, port, timeout=timeout))
        return future

    def answer_hung(self, status: int | None = None) -> None:
        """The hung probes answer together: with `status`, or (None) they time out."""
        for future in self.hung_probes:
            future.set_result(HealthAnswer(status=status, ms=1.5 if status else 0.0))
        self.hung_probes.clear()

    def generate_one(
        self, host: str, port: int, *, timeout: float, request: ReadyRequest = READY_REQUEST
    ) -> Future[str | None]:
        self.generation_calls += 1
        self.ready_requests.append(request)
        future: Future[str | None] = Future()
        if self.hold_generations:
            self.pending_generations.append(future)
        else:
            future.set_result(self.generation_error)
        return future

    def finish_loading(self, error: str | None = None) -> None:
        """The model has loaded (or not): the held one-token generations answer."""
        self.hold_generations = False
        for future in self.pending_generations:
            future.set_result(error)
        self.pending_generations.clear()

    # memory
    def memory(self) -> tuple[int, int]:
        return self.total, self.available

    def swap(self) -> tuple[int, int]:
        return 2 * 1024**3, 512 * 1024**2

    def folder_size(self, folder: Path) -> int:
        return self.folder_sizes.get(folder, 0)

    def usage(self, process: Process) -> tuple[int, float] | None:
        return (100 * 1024**2, 2.5) if process.alive() else None
