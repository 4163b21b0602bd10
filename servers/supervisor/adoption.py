"""At supervisor start: take over the model servers a previous supervisor left behind (even
after `kill -9`), by the PID recorded on the row or, for one spawned just before it died, by the
marker in the process's environment; or clear what is gone. Never a duplicate start."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from django.conf import settings

from servers.logs import server_log_path
from servers.models import DesiredState, Server
from servers.states import PROBED, WITH_PROCESS, State
from servers.supervisor import logfile
from servers.supervisor.host import Process
from servers.supervisor.policy import KillReason, start_timeout, utc
from servers.supervisor.transitions import save_fields, server_note, transition

if TYPE_CHECKING:
    from servers.supervisor.managed import Managed


def server_marker(server: Server) -> str:
    """What a model server carries in its environment to be found again: this manager's data
    folder (two managers on one machine never claim each other's) and the server's row."""
    return f"{settings.MLXM_DATA_DIR}#server-{server.pk}"


def adopt(m: Managed) -> None:
    """Take over `m`'s server if its process still runs, or clear what is gone."""
    server, now = m.server, m.host.time()
    state = State(server.state)
    process = _find_recorded(m)
    if process is None and state == State.STARTING:
        process = _find_unrecorded(m)
    if process is not None and state not in WITH_PROCESS:
        # Recorded as not running, yet alive: end it rather than leave a stray copy.
        m.process = process
        m.kill(KillReason.ORPHAN)
    elif process is not None:
        m.process, m.next_probe = process, now
        if state == State.STARTING:
            m.start_deadline = now + start_timeout(server.profile, m.policy)
            m.log_start = m.log_scanned = logfile.size(server_log_path(server.profile.pk))
        elif state == State.STOPPING:
            m.host.signal(process, signal.SIGTERM)
            m.kill_at = now + m.policy.stop_timeout
    elif state in PROBED:
        message = "The process ended while the supervisor was not running; starting it again."
        transition(server, State.BACKOFF, cause="exit", message=message, backoff_until=utc(now))
        m.backoff_until = now
    elif state == State.STOPPING:
        transition(server, State.STOPPED, cause="exit", message="The process ended while the supervisor was away.")
    elif state == State.BACKOFF:
        m.backoff_until = server.backoff_until.timestamp() if server.backoff_until else now
    elif state == State.STOPPED and server.desired_state == DesiredState.RUNNING:
        m.resuming = True  # kept running over the supervisor's stop (or asked for while it was away)


def _find_recorded(m: Managed) -> Process | None:
    server = m.server
    if not server.pid:
        return None
    process = m.host.find(server.pid, create_time=server.process_started_at, cmdline=server.cmdline)
    if process is None:
        message = f"PID {server.pid} is gone or now belongs to another program; cleared."
        server_note(server, cause="supervisor", message=message)
        save_fields(server, pid=None, process_started_at=None)
    else:
        server_note(server, cause="supervisor", message=f"Adopted the running process (PID {server.pid}).")
    return process


def _find_unrecorded(m: Managed) -> Process | None:
    """A process spawned for this server whose PID was never saved: the previous supervisor died
    between spawn and save. Found by the marker in its environment; recorded, so it is adopted."""
    server = m.server
    process = m.host.find_marked(server_marker(server))
    if process is None:
        return None
    argv = process.cmdline()
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv[:-1] else server.profile.port
    save_fields(server, pid=process.pid, process_started_at=process.create_time, cmdline=argv, port=port)
    message = f"Found PID {process.pid}, started just before the previous supervisor stopped; adopted it."
    server_note(server, cause="supervisor", message=message)
    return process
