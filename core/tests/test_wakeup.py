"""The supervisor's nudge to web workers waiting for a state change (an on-demand start)."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.wakeup import StateWatch, wake_watchers, watchers_folder


def test_a_transition_nudge_ends_the_wait_at_once_and_a_dead_watchers_socket_is_removed(
    settings: Any, tmp_path: Path
) -> None:
    settings.MLXM_DATA_DIR = tmp_path
    wake_watchers()  # nobody waiting, no folder: nothing happens

    async def scenario() -> list[bool]:
        with StateWatch() as watch:
            timed_out = await watch.wait(0.05)
            wake_watchers()
            nudged = await watch.wait(60.0)
            return [timed_out, nudged]

    # In a thread of its own: a browser test earlier in this worker may have left an event loop running.
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, scenario()).result()
    assert answers == [False, True], "a timeout says False, the nudge True (long before 60 s)"
    assert list(watchers_folder().iterdir()) == [], "the socket goes with the watch"

    dead = watchers_folder() / "4242-dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(dead))  # closed without unlinking: a worker killed while it waited
    wake_watchers()
    assert not dead.exists()


def test_a_data_directory_too_deep_for_a_socket_path_waits_by_polling(settings: Any, tmp_path: Path) -> None:
    """A UNIX socket's path holds about 100 bytes: a deeper data directory must not turn an
    on-demand request into a 500 (the e2e two-node test met this); the wait falls back to its poll."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    settings.MLXM_DATA_DIR = deep

    async def scenario() -> bool:
        with StateWatch() as watch:
            wake_watchers()
            return await watch.wait(0.05)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result() is False, "no nudge can reach it: the poll answers"
    assert list(watchers_folder().iterdir()) == []
