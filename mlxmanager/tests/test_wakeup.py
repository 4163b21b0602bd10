"""The supervisor's nudge to web workers waiting for a state change (an on-demand start)."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlxmanager.wakeup import StateWatch, wake_watchers, watchers_folder


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
