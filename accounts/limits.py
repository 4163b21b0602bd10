"""How the limits of a person, their groups and a key combine (accounts.models.Limits holds them).

- A person's own value, where an administrator set one, is theirs (wider or narrower than their
  groups'): it is how one person is made an exception.
- Else the most generous value among their groups that set one: being in one more group never
  takes anything away. A group that leaves a limit blank says nothing about it (it does not lift
  the other groups' value: groups are also roles, and a role without limits must not unlimit).
- Else none.
- A key narrows, never widens: its own value counts only below its owner's (forms refuse more).

Each of them is checked against its own counter: a key's against what that key used, the
person's against what all of the person's keys (and pages) used together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from accounts.models import GroupLimits, UserLimits

LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month", "max_concurrent")


@dataclass(frozen=True)
class LimitSet:
    """The five limits, each a number or None (no limit)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    max_concurrent: int | None = None

    @classmethod
    def of(cls, row: Any) -> LimitSet:
        """The values of a `Limits` row (or anything with those attributes); None: an empty set."""
        if row is None:
            return cls()
        return cls(**{name: getattr(row, name) for name in LIMIT_FIELDS})

    def as_dict(self) -> dict[str, int | None]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def text(self) -> str:
        """The limits set, for the audit trail: "requests_per_minute 30, tokens_per_day 1000"."""
        return ", ".join(f"{name} {value}" for name, value in self.as_dict().items() if value is not None)

    def __bool__(self) -> bool:
        return any(value is not None for value in self.as_dict().values())

    def over(self, other: LimitSet) -> dict[str, int]:
        """The fields where this set allows more than `other` (a key beyond its owner), with other's value."""
        return {
            name: bound
            for name, value in self.as_dict().items()
            if (bound := getattr(other, name)) is not None and (value is None or value > bound)
        }

    def narrowed_by(self, other: LimitSet) -> LimitSet:
        """Each limit the narrower of the two (None counts as no limit)."""
        return LimitSet(**{name: _narrower(value, getattr(other, name)) for name, value in self.as_dict().items()})


def _narrower(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def most_generous(sets: Iterable[LimitSet]) -> LimitSet:
    """Per limit, the largest value any of the sets gives (blank in one set: that set says nothing)."""
    merged: dict[str, int | None] = dict.fromkeys(LIMIT_FIELDS)
    for limits in sets:
        for name, value in limits.as_dict().items():
            if value is not None:
                current = merged[name]
                merged[name] = value if current is None else max(current, value)
    return LimitSet(**merged)


def person_limits_combine(own: LimitSet, groups: Iterable[LimitSet]) -> LimitSet:
    """The person's limits: their own value where set, else their groups' most generous."""
    grouped = most_generous(groups)
    return LimitSet(
        **{name: value if value is not None else getattr(grouped, name) for name, value in own.as_dict().items()}
    )


def person_limits(user: Any) -> LimitSet:
    """The limits that apply to `user` (two queries: their own row, their groups' rows)."""
    own = LimitSet.of(UserLimits.objects.filter(user=user).first())
    groups = [LimitSet.of(row) for row in GroupLimits.objects.filter(group__user=user)]
    return person_limits_combine(own, groups)
