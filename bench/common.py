from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Result:
    """One figure of a benchmark: its median and p95 against a goal (lower is better)."""

    figure: str
    unit: str
    median: float
    p95: float
    goal: float | None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.median <= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def summarize(figure: str, unit: str, samples: list[float], goal: float | None, note: str = "") -> Result:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Result(figure, unit, statistics.median(ordered), p95, goal, note)
