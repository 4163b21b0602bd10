"""`make run` in the foreground: the Procfile's web app and supervisor under honcho, with Ctrl-C
stopping both cleanly and ending the run with one line and exit status 0.

Two things stand in the way with a bare `honcho start` under make: the terminal sends Ctrl-C's
SIGINT to make too, which then reports "Interrupt" and fails however cleanly the app stopped; and
honcho kills what is still running 5 s after the first process ends, which cuts the supervisor's
clean stop short (it stops every model server, up to twice its 10 s stop timeout, plus 5 s). So
honcho runs in a process group of its own that owns the terminal while it runs (as a shell does
for a job), and with a grace period long enough."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

GRACE_SECONDS = 40
STOPPED_BY_SIGNAL = (130, 143)  # honcho's status after SIGINT / SIGTERM: a requested stop
HONCHO = (
    "import sys, honcho.manager, honcho.command;"
    f"honcho.manager.KILL_WAIT = {GRACE_SECONDS};"  # honcho has no option for its grace period
    "sys.argv[0] = 'honcho';"
    "honcho.command.main()"
)


def main(argv: list[str]) -> int:
    child = subprocess.Popen([sys.executable, "-c", HONCHO, "--no-colour", *argv], process_group=0)
    terminal = _hand_terminal_to(child.pid)

    def forward(signum: int, frame: FrameType | None) -> None:  # a stop asked of us, not by the terminal
        os.killpg(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        code = child.wait()
    finally:
        if terminal is not None:
            _take_terminal_back(terminal)
    if code == 0 or code in STOPPED_BY_SIGNAL:
        print("MLX Manager stopped: the web app and the supervisor ended cleanly. Goodbye.", flush=True)
        return 0
    print(f"MLX Manager stopped with status {code}; the lines above say why.", file=sys.stderr, flush=True)
    return code if code > 0 else 1


def _hand_terminal_to(group: int) -> int | None:
    """Make `group` the terminal's foreground group, so Ctrl-C reaches it alone; None without a terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return None
    try:
        if os.tcgetpgrp(fd) != os.getpgrp():  # not in the foreground ourselves: leave the terminal alone
            os.close(fd)
            return None
        _set_foreground(fd, group)
    except OSError:
        os.close(fd)
        return None
    return fd


def _take_terminal_back(fd: int) -> None:
    try:
        _set_foreground(fd, os.getpgrp())
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_foreground(fd: int, group: int) -> None:
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not set it otherwise
    try:
        os.tcsetpgrp(fd, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
