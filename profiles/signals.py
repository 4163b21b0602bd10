"""Questions the profiles app asks of the apps above it (core.questions.ask). Each names who answers."""

from __future__ import annotations

from django.dispatch import Signal

# `profiles` (a sequence of ServerProfile) -> {profile pk: ServerStatus}, in one query.
# Answered by servers/receivers.py.
server_statuses_wanted = Signal()
# `pid` -> the ServerProfile whose server is that process, or None. Answered by servers/receivers.py.
serving_profile_wanted = Signal()
