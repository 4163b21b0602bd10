"""64 concurrent streams through one stack as `make run` serves it, against the same 64 sent
straight to the model server in the same run: every stream must complete (200, then [DONE]), none
may be refused, and the tokens per second through must stay close to direct."""

from __future__ import annotations

from bench.common import Result, concurrent_streams, summarize
from bench.gateway_run import GatewayRun

STREAMS = 64
TOKENS = 100
ROUNDS = 2


def run() -> list[Result]:
    ratios: list[float] = []
    completed = refused = 0
    failures: list[str] = []
    with GatewayRun() as gateway:
        concurrent_streams(gateway.through_url, gateway.auth(), "tiny", streams=4, tokens=8)  # warm
        for _ in range(ROUNDS):
            direct = concurrent_streams(gateway.direct_url, {}, "default_model", streams=STREAMS, tokens=TOKENS)
            through = concurrent_streams(gateway.through_url, gateway.auth(), "tiny", streams=STREAMS, tokens=TOKENS)
            completed += through.completed
            refused += len(through.refused)
            failures += through.refused
            ratios.append(direct.rate / through.rate if through.rate else float("inf"))
    expected = STREAMS * ROUNDS
    note = f"completed {completed}/{expected}, refused or failed {refused}" + (
        f" (first: {failures[0]})" if failures else ""
    )
    return [
        summarize(
            "gateway: 64 streams at once, direct / through tokens per second",
            "x",
            ratios,
            baseline="",
            baseline_samples=[],
            goal=1.10 if completed == expected else 0.0,  # a stream lost fails the figure
            note=note,
            completed=completed,
            expected=expected,
            refused=refused,
        )
    ]
