"""Where other code has imported the supervisor's names from: kept as a migration path.

The supervisor is split at its seams: the loop (`loop.py`), one managed server's reconcile
(`managed.py`, `probes.py`, `adoption.py`), eviction's rules (`eviction.py`), the bookkeeping
(`upkeep.py`) and the timings (`policy.py`). New code imports from those.
"""

from __future__ import annotations

from servers.supervisor.adoption import server_marker
from servers.supervisor.loop import DATABASE_AWAY, Supervisor
from servers.supervisor.policy import Policy, on_grid

__all__ = ["DATABASE_AWAY", "Policy", "Supervisor", "on_grid", "server_marker"]
