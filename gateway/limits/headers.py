"""What clients read about their limits, in each API's own words (pure functions).

OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, the reset as a duration ("1s",
"6m0s", "20ms"). Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, the
reset as an RFC 3339 time. The requests headers tell the requests-per-minute limit; the tokens
headers tell whichever token limit has least left (per minute, the day's or the month's budget).
A refusal is a 429 in the API's error shape (gateway/errors.py) with `Retry-After`; a budget
reached also says `x-should-retry: false`, which both SDKs obey: retrying would not help for hours.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from gateway.errors import Flavour, GatewayError
from gateway.limits.admission import Quota, RateState, Refusal


def go_duration(seconds: float) -> str:
    """OpenAI's reset form: 20ms, 1s, 6m0s, 12h0m0s (whole seconds from one second up)."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quota_headers(flavour: Flavour, unit: str, quota: Quota, now: float) -> dict[str, str]:
    if flavour is Flavour.ANTHROPIC:
        prefix = f"anthropic-ratelimit-{unit}"
        return {
            f"{prefix}-limit": str(quota.limit),
            f"{prefix}-remaining": str(quota.remaining),
            f"{prefix}-reset": rfc3339(quota.reset_at),
        }
    return {
        f"x-ratelimit-limit-{unit}": str(quota.limit),
        f"x-ratelimit-remaining-{unit}": str(quota.remaining),
        f"x-ratelimit-reset-{unit}": go_duration(quota.reset_at - now),
    }


def rate_headers(state: RateState, flavour: Flavour) -> dict[str, str]:
    """The headers of an answer (admitted or refused); none for a caller without limits."""
    headers: dict[str, str] = {}
    if state.requests is not None:
        headers |= _quota_headers(flavour, "requests", state.requests, state.now)
    if state.tokens is not None:
        headers |= _quota_headers(flavour, "tokens", state.tokens, state.now)
    return headers


def _kind(refusal: Refusal) -> str:
    if refusal.is_budget:
        return "budget"
    if refusal.limit == "max_concurrent":
        return "concurrency"
    return "requests" if refusal.limit == "requests_per_minute" else "tokens"


def refusal_error(refusal: Refusal, flavour: Flavour) -> GatewayError:
    """The 429 a refusal answers: its message says which limit and when it renews."""
    headers = rate_headers(refusal.state, flavour)
    if refusal.is_budget:
        headers["x-should-retry"] = "false"
    return GatewayError(429, refusal.message, retry_after=refusal.retry_after, headers=headers, kind=_kind(refusal))
