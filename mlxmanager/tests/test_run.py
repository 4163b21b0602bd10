"""`make run` (mlxmanager.run under honcho, the Procfile): Ctrl-C ends both processes cleanly and
the console says so, each process once, with its own exit status (not a shell's -15)."""

from __future__ import annotations

import re
from pathlib import Path

from testing.stack import Stack


def test_ctrl_c_reports_each_process_stopped_once_and_cleanly(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack").start()
    assert stack.stop() == 0
    console = stack.log_text()
    stopped = re.findall(r"system\s+\| (\S+) stopped \(rc=(-?\d+)\)", console)
    assert sorted(stopped) == [("supervisor.1", "0"), ("web.1", "0")], console[-3000:]
    assert "ended cleanly" in console
