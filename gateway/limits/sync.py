"""Budgets across nodes: every few seconds (each sampling pass of this node's supervisor,
MLXM_SUPERVISOR_POLL) this node's counts of the current minute, day and month go to the shared
database (`NodeCount`, one row per node, subject and span), and the other nodes' sums come back
into the node-local store's `remote_*` columns, which every check adds. So a person's budget
holds across machines, at most a few seconds (two sampling passes) behind; concurrency and the
queue stay per node (each node's model servers are its own).

On one machine there is nobody to share with: nothing is written to the shared database.
Old spans are forgotten here too (the minutes after an hour, the days and months after two).
"""

from __future__ import annotations

import sqlite3
import time

from django.conf import settings
from django.db.models import Sum

from gateway.limits.store import Store, spans_now, store, store_path
from gateway.models import NodeCount
from nodes.models import Node

# How long spans are kept, in seconds past their start (the Usage page reads only current ones).
KEPT = {"m": 3600, "d": 2 * 86400, "M": 62 * 86400}


def counts_share(*, at: Store | None = None, now: float | None = None, node: str | None = None) -> int:
    """Publish this node's current counts and take in the others'; returns the rows published."""
    if at is None and not store_path().exists():
        return 0  # no limit was ever checked on this node
    at, now = at or store(), time.time() if now is None else now
    node = node or settings.MLXM_NODE_NAME
    starts = {span: start for span, (start, _end) in spans_now(now).items()}
    if not Node.objects.exclude(name=node).exists():
        return 0
    conn = at.connection()
    mine = _current(conn, starts)
    NodeCount.objects.bulk_create(
        [
            NodeCount(node=node, subject=s, span=span, start=start, requests=r, tokens=t)
            for s, span, start, r, t in mine
        ],
        update_conflicts=True,
        unique_fields=["node", "subject", "span", "start"],
        update_fields=["requests", "tokens"],
    )
    others = (
        NodeCount.objects.exclude(node=node)
        .filter(start__in=set(starts.values()))
        .values("subject", "span", "start")
        .annotate(requests_sum=Sum("requests"), tokens_sum=Sum("tokens"))
    )
    rows = [(o["subject"], o["span"], o["start"], o["requests_sum"], o["tokens_sum"]) for o in others]
    rows = [row for row in rows if starts.get(row[1]) == row[2]]
    with at.transaction() as writing:
        writing.executemany(
            "INSERT INTO usage (subject, span, start, remote_requests, remote_tokens) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET remote_requests = excluded.remote_requests, remote_tokens = excluded.remote_tokens",
            rows,
        )
    return len(mine)


def _current(conn: sqlite3.Connection, starts: dict[str, int]) -> list[tuple[str, str, int, int, int]]:
    return [
        (subject, span, start, requests, tokens)
        for subject, span, start, requests, tokens in conn.execute(
            "SELECT subject, span, start, requests, tokens FROM usage "
            "WHERE (span = 'm' AND start = ?) OR (span = 'd' AND start = ?) OR (span = 'M' AND start = ?)",
            (starts["m"], starts["d"], starts["M"]),
        )
        if requests or tokens
    ]


def counts_prune(*, at: Store | None = None, now: float | None = None) -> None:
    """Forget spans long past, here and (this node's) in the shared database. Once a minute."""
    now = time.time() if now is None else now
    NodeCount.objects.filter(start__lt=now - KEPT["M"]).delete()
    for span, kept in KEPT.items():
        NodeCount.objects.filter(node=settings.MLXM_NODE_NAME, span=span, start__lt=now - kept).delete()
    if at is None and not store_path().exists():
        return
    with (at or store()).transaction() as conn:
        conn.executemany("DELETE FROM usage WHERE span = ? AND start < ?", [(s, now - k) for s, k in KEPT.items()])
