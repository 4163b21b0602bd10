"""Signals that `servers` sends to the apps above it, which it cannot import (layers run one way).

Each names who answers it, so a reader can jump from the send to the receivers.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent by the supervisor about once a minute with `now` (an aware datetime), where it prunes its
# own samples (servers/supervisor/upkeep.py, `samples_prune`): the apps above clean up their own
# tables there, off their request paths. Answered by gateway/receivers.py (usage records, seen
# forward signatures).
prune_due = Signal()

# Sent by the supervisor after each sampling pass (every MLXM_SUPERVISOR_POLL seconds) with `now`
# (servers/supervisor/loop.py, `Loop.sample`): for work that must be fresh within seconds and off
# every request path. Answered by gateway/receivers.py (the limits' counts shared between nodes).
sampled = Signal()

# Sent by the dashboard with `profiles` (the ServerProfiles whose cards it is about to show) by
# `card_extras` (servers/dashboard/cards.py): each receiver answers a dict of profile pk -> the
# `CardExtra` section it adds to that card, reading all of them in one query. Answered by
# gateway/receivers.py (requests in the last hour, last tokens per second, "Use it").
cards_shown = Signal()
