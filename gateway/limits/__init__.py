"""Limits, budgets and the fair queue of `/v1/` (issue 29): admission.py checks and counts,
headers.py answers in each API's words, queue.py takes turns between people, store.py is the
node-local file they share, sync.py adds the other nodes' counts."""
