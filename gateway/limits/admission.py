"""Admit a request against its caller's limits, charge what the answer used, free its slot.

The request path calls, for a caller whose `CallerLimits` it read (and may cache):

    verdict = admit(limits)                  # before the request goes upstream
    if isinstance(verdict, Refusal): answer 429 (gateway/limits/headers.py)
    ... relay the answer, with rate_headers(verdict.state, flavour) ...
    settle(verdict, prompt_tokens=..., completion_tokens=...)   # when the answer ends (or fails)

`settle` charges the tokens and frees the concurrency slot; it is safe to call twice, and `release`
frees the slot of a request that ends without an answer. A caller with no limit set anywhere costs
nothing: no transaction at all.

Each subject (the key, the person) is checked against its own counters: a request is admitted
while every token counter is below its limit (the answer's size is unknown before it is made), and
counted at once in the requests of the minute; its tokens are charged when it ends, so a stream
that crosses a budget finishes and the next request is refused.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from accounts.limits import LimitSet, person_limits
from accounts.models import User
from gateway.limits.store import SPANS, Store, pid_alive, spans_now, store, used_now
from gateway.models import ApiKey

# limit name -> (span counted, column, what people read)
TOKEN_LIMITS = {
    "tokens_per_minute": ("m", "the tokens per minute"),
    "tokens_per_day": ("d", "the daily token budget"),
    "tokens_per_month": ("M", "the monthly token budget"),
}
BUDGETS = frozenset({"tokens_per_day", "tokens_per_month"})
CONCURRENCY_RETRY_AFTER = 1


@dataclass(frozen=True)
class CallerLimits:
    """What applies to one caller: the person's limits (with their groups') and the key's own."""

    user_id: int
    key_id: int | None
    person: LimitSet
    key: LimitSet = field(default_factory=LimitSet)

    def subjects(self) -> list[tuple[str, LimitSet]]:
        found = [(f"u{self.user_id}", self.person)] if self.person else []
        if self.key_id is not None and self.key:
            found.append((f"k{self.key_id}", self.key))
        return found


def caller_limits_read(*, user: User, key: ApiKey | None) -> CallerLimits:
    """Read a caller's limits from the database (two or three queries: cache the result, and read
    it again when a person's, a group's or a key's limits or a group's members change)."""
    return CallerLimits(
        user_id=user.pk,
        key_id=key.pk if key is not None else None,
        person=person_limits(user),
        key=LimitSet.of(key),
    )


@dataclass(frozen=True)
class Quota:
    """One limit's standing for the headers: its value, what is left, when it renews (epoch)."""

    name: str
    limit: int
    remaining: int
    reset_at: float


@dataclass(frozen=True)
class RateState:
    """The tightest requests limit and the tightest token limit (the one with least left), if any."""

    requests: Quota | None = None
    tokens: Quota | None = None
    now: float = 0.0


@dataclass
class Admission:
    subjects: list[str]
    lease_ids: list[int]
    state: RateState
    settled: bool = False
    minute: int = 0  # the start of the minute its request was counted in

    @property
    def counted(self) -> bool:
        return bool(self.subjects)


@dataclass(frozen=True)
class Refusal:
    """Which limit refused (`limit`, of the `key` or the `person`), for how long (`retry_after`)."""

    limit: str
    holder: str  # "key" | "person"
    retry_after: int
    state: RateState
    message: str = field(default="")

    @property
    def is_budget(self) -> bool:
        return self.limit in BUDGETS


UNLIMITED = RateState()


def admit(limits: CallerLimits, *, at: Store | None = None, now: float | None = None) -> Admission | Refusal:
    subjects = limits.subjects()
    if not subjects:
        return Admission(subjects=[], lease_ids=[], state=UNLIMITED)
    now = time.time() if now is None else now
    spans = spans_now(now)
    with (at or store()).transaction() as conn:
        quotas: list[Quota] = []
        for subject, subject_limits in subjects:
            refusal = _check(conn, subject, subject_limits, spans, now, quotas)
            if refusal is not None:
                return refusal
        leases = []
        for subject, subject_limits in subjects:
            conn.execute(
                "INSERT INTO usage (subject, span, start, requests) VALUES (?, 'm', ?, 1) "
                "ON CONFLICT DO UPDATE SET requests = requests + 1",
                (subject, spans["m"][0]),
            )
            if subject_limits.max_concurrent is not None:
                cursor = conn.execute(
                    "INSERT INTO leases (subject, pid, started) VALUES (?, ?, ?)", (subject, os.getpid(), now)
                )
                leases.append(int(cursor.lastrowid or 0))
    return Admission(
        subjects=[s for s, _ in subjects], lease_ids=leases, state=_state(quotas, now), minute=spans["m"][0]
    )


def _check(
    conn: sqlite3.Connection,
    subject: str,
    limits: LimitSet,
    spans: dict[str, tuple[int, int]],
    now: float,
    quotas: list[Quota],
) -> Refusal | None:
    holder = "key" if subject.startswith("k") else "person"
    used = used_now(conn, subject, spans)
    if (rpm := limits.requests_per_minute) is not None:
        requests = used["m"][0]
        quota = Quota("requests_per_minute", rpm, max(rpm - requests - 1, 0), spans["m"][1])
        if requests >= rpm:
            return _refusal("requests_per_minute", holder, quota, spans, now, quotas)
        quotas.append(quota)
    for name, (span, _) in TOKEN_LIMITS.items():
        if (bound := getattr(limits, name)) is not None:
            tokens = used[span][1]
            quota = Quota(name, bound, max(bound - tokens, 0), spans[span][1])
            if tokens >= bound:
                return _refusal(name, holder, quota, spans, now, quotas)
            quotas.append(quota)
    if (most := limits.max_concurrent) is not None and _under_way(conn, subject) >= most:
        return Refusal(
            limit="max_concurrent",
            holder=holder,
            retry_after=CONCURRENCY_RETRY_AFTER,
            state=_state(quotas, now),
            message=f"The {holder}'s limit of {most} concurrent requests is reached: "
            "retry when one of them has finished.",
        )
    return None


def _under_way(conn: sqlite3.Connection, subject: str) -> int:
    """The subject's requests under way; leases of workers that died are cleared first."""
    rows = conn.execute("SELECT id, pid FROM leases WHERE subject = ?", (subject,)).fetchall()
    dead = [(lease,) for lease, pid in rows if not pid_alive(pid)]
    if dead:
        conn.executemany("DELETE FROM leases WHERE id = ?", dead)
    return len(rows) - len(dead)


def _refusal(
    name: str, holder: str, quota: Quota, spans: dict[str, tuple[int, int]], now: float, quotas: list[Quota]
) -> Refusal:
    retry_after = max(1, int(quota.reset_at - now + 0.999))
    renews = _renewal(name, quota.reset_at, now)
    if name == "requests_per_minute":
        what = f"The {holder}'s limit of {quota.limit} requests per minute is reached"
    else:
        what = f"The {holder}'s limit of {quota.limit:,} {name.replace('_', ' ')} is reached ({TOKEN_LIMITS[name][1]})"
    return Refusal(
        limit=name,
        holder=holder,
        retry_after=retry_after,
        state=_state([*quotas, quota], now),
        message=f"{what}: it renews {renews}.",
    )


def _renewal(name: str, reset_at: float, now: float) -> str:
    when = datetime.fromtimestamp(reset_at, UTC)
    if name in BUDGETS:
        return f"at {when:%Y-%m-%d %H:%M} UTC"
    return f"in {max(1, int(reset_at - now + 0.999))} s ({when:%H:%M:%S} UTC)"


def _state(quotas: list[Quota], now: float) -> RateState:
    requests = [q for q in quotas if q.name == "requests_per_minute"]
    tokens = [q for q in quotas if q.name in TOKEN_LIMITS]
    return RateState(
        requests=min(requests, key=lambda q: q.remaining, default=None),
        tokens=min(tokens, key=lambda q: q.remaining, default=None),
        now=now,
    )


def settle(
    admission: Admission,
    *,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    at: Store | None = None,
    now: float | None = None,
    uncount: bool = False,
) -> None:
    """Charge what the answer used (the server's `usage`) to every span, and free its slot. Once.
    `uncount`: the request was not served here after all (handed to another door, which counts
    it): its request is taken back from its minute."""
    if admission.settled or not admission.counted:
        admission.settled = True
        return
    admission.settled = True
    tokens = max(0, prompt_tokens or 0) + max(0, completion_tokens or 0)
    spans = spans_now(time.time() if now is None else now)
    with (at or store()).transaction() as conn:
        if tokens:
            conn.executemany(
                "INSERT INTO usage (subject, span, start, tokens) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET tokens = tokens + excluded.tokens",
                [(subject, span, spans[span][0], tokens) for subject in admission.subjects for span in SPANS],
            )
        if admission.lease_ids:
            conn.executemany("DELETE FROM leases WHERE id = ?", [(lease,) for lease in admission.lease_ids])
        if uncount:
            conn.executemany(
                "UPDATE usage SET requests = max(requests - 1, 0) WHERE subject = ? AND span = 'm' AND start = ?",
                [(subject, admission.minute) for subject in admission.subjects],
            )


def release(admission: Admission, *, at: Store | None = None, uncount: bool = False) -> None:
    """Free the slot of a request that ends without a usage to charge (refused upstream, client
    gone): the same as settling nothing; `uncount` as in `settle`."""
    settle(admission, prompt_tokens=None, completion_tokens=None, at=at, uncount=uncount)
