"""`mlxm logs -f` ends on Ctrl-C even when Python drops the KeyboardInterrupt: one raised while a
finalizer runs (the garbage collector closing an HTTP response) is printed and lost. The follow is
tested whole, live, in api/tests/test_live.py; here only the loop, with the log endpoint's answers given by
hand (a press that lands in a finalizer cannot be timed against a real process)."""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
from typing import Any

import pytest

from mlxm.cli import CtrlC, _on_ctrl_c, cmd_logs


class LogAnswers:
    """What /api/v1/ answers to the two calls `cmd_logs` makes: the profile's id, then log chunks."""

    def __init__(self, *texts: str) -> None:
        self.chunks = iter([{"text": text, "offset": i, "inode": 1} for i, text in enumerate(texts)])

    def profile_id(self, name: str) -> int:
        return 7

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return next(self.chunks)


def _ctrl_c_lost_in_a_finalizer(seconds: float) -> None:
    with contextlib.suppress(KeyboardInterrupt):  # what Python does with one raised inside a __del__
        _on_ctrl_c(signal.SIGINT, None)


def test_a_ctrl_c_python_dropped_still_ends_the_follow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CtrlC, "pressed", False)
    out = io.StringIO()
    follow = argparse.Namespace(name="tiny", follow=True)
    with pytest.raises(KeyboardInterrupt):
        cmd_logs(LogAnswers("first\n", "second\n"), follow, out, sleep=_ctrl_c_lost_in_a_finalizer)  # type: ignore[arg-type]
    assert out.getvalue() == "first\n", "it polled again after Ctrl-C"
