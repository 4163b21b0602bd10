"""Where a person and each of their keys stand against their limits now: used, left, when each
renews (the Usage page, the keys page, `/api/v1/limits/`). Read from this node's store, which
holds the other nodes' counts as of their last sync (sync.py: a few seconds behind)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from accounts.forms import LIMIT_LABELS
from accounts.limits import LIMIT_FIELDS, LimitSet, person_limits
from accounts.models import User, UserStatus
from gateway.limits.admission import BUDGETS
from gateway.limits.store import Store, spans_now, store, used_now
from gateway.models import ApiKey

WARN_AT = 0.8  # a budget this much used shows on the person's pages
SPAN_OF = {"requests_per_minute": "m", "tokens_per_minute": "m", "tokens_per_day": "d", "tokens_per_month": "M"}


@dataclass(frozen=True)
class Standing:
    limit: str  # the field's name
    label: str
    value: int
    used: int
    renews_at: datetime | None  # None: concurrency (frees as requests end)

    @property
    def remaining(self) -> int:
        return max(self.value - self.used, 0)

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.value)) if self.value else 100

    @property
    def is_budget(self) -> bool:
        return self.limit in BUDGETS

    @property
    def warn(self) -> bool:
        return self.is_budget and self.used >= WARN_AT * self.value


@dataclass(frozen=True)
class HolderStanding:
    """One person or key: `holder` is "person" or "key", `name` the email or the key's name."""

    holder: str
    name: str
    key_id: int | None
    standings: list[Standing]

    @property
    def warnings(self) -> list[Standing]:
        return [standing for standing in self.standings if standing.warn]


def standing_read(
    subject: str, limits: LimitSet, *, at: Store | None = None, now: float | None = None
) -> list[Standing]:
    if not limits:
        return []
    now = time.time() if now is None else now
    spans = spans_now(now)
    conn = (at or store()).connection()
    used = used_now(conn, subject, spans)
    (under_way,) = conn.execute("SELECT count(*) FROM leases WHERE subject = ?", (subject,)).fetchone()
    found = []
    for name in LIMIT_FIELDS:
        value = getattr(limits, name)
        if value is None:
            continue
        if name == "max_concurrent":
            found.append(Standing(name, LIMIT_LABELS[name], value, under_way, None))
            continue
        span = SPAN_OF[name]
        count = used[span][0 if name == "requests_per_minute" else 1]
        found.append(Standing(name, LIMIT_LABELS[name], value, count, datetime.fromtimestamp(spans[span][1], UTC)))
    return found


def standings_of(user: User, *, at: Store | None = None, now: float | None = None) -> list[HolderStanding]:
    """The person's standing, then each usable key's that has limits of its own."""
    found = [
        HolderStanding("person", user.email, None, standing_read(f"u{user.pk}", person_limits(user), at=at, now=now))
    ]
    for key in ApiKey.objects.filter(user=user, revoked_at__isnull=True).order_by("name"):
        if key.is_usable() and (limits := LimitSet.of(key)):
            found.append(HolderStanding("key", key.name, key.pk, standing_read(f"k{key.pk}", limits, at=at, now=now)))
    return [holder for holder in found if holder.standings]


def standings_all(*, at: Store | None = None, now: float | None = None) -> list[HolderStanding]:
    """Everyone's (administrators): each approved person with a limit somewhere, and their keys'."""
    found: list[HolderStanding] = []
    for user in User.objects.filter(status=UserStatus.APPROVED).order_by("email"):
        found.extend(standings_of(user, at=at, now=now))
    return found
