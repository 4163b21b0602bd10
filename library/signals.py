"""Questions the library asks of the apps above it (core.questions.ask). Each names who answers."""

from __future__ import annotations

from django.dispatch import Signal

# `repo_ids` (a collection of model names) -> {model: ModelUse} for those some profile names.
# Answered by servers/receivers.py.
model_uses_wanted = Signal()
# -> the absolute model paths this node's profiles name. Answered by servers/receivers.py.
profile_folders_wanted = Signal()
