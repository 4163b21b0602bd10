"""What one gateway request measured, turned into its usage record when the answer is done."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.limits.gate import Passage, gate_exit
from gateway.models import GatewayApi
from gateway.recorder import recorder
from gateway.routing import Caller
from profiles.models import ServerProfile

# While a stream flows its server's `last_used_at` is refreshed this often (seconds), not per
# chunk: the card's idle clock and the supervisor's check for requests whose worker died
# (`in_flight_stale`) both read it.
USE_STAMP_INTERVAL = 5.0
# The model name recorded for a request that reached no profile (a made-up or mistyped name, or
# none): one value, so that no key holder can grow /metrics' series or the Usage page's rows by
# sending names. The refusal's text (the record's `error`) still says what was asked for.
UNKNOWN_MODEL = "unknown"


@dataclass
class Meter:
    api: GatewayApi
    stream: bool
    began: float = field(default_factory=time.perf_counter)
    caller: Caller | None = None
    profile: ServerProfile | None = None
    model_name: str = ""
    status: int = 200
    error: str = ""
    first_token_at: float | None = None
    counted_tokens: int = 0  # content chunks seen in a stream
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    in_use: bool = False  # counted in its server's `in_flight`: released when recorded
    stamped_at: float = field(default_factory=time.perf_counter)  # last use noted (at most every USE_STAMP_INTERVAL)
    # Issue 29: the passage through the caller's limits and the fair queue (gateway/limits/gate.py,
    # taken in relay.answer), given back once: with the usage when recorded, without on release.
    passage: Passage | None = None

    def token(self) -> None:
        self.counted_tokens += 1
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        if self.in_use and now - self.stamped_at >= USE_STAMP_INTERVAL and self.profile is not None:
            self.stamped_at = now
            recorder.still(self.profile)

    def usage(self, usage: dict[str, Any] | None) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens = prompt if isinstance(prompt, int) else self.prompt_tokens
            self.completion_tokens = completion if isinstance(completion, int) else self.completion_tokens

    def fail(self, status: int, error: str) -> None:
        self.status, self.error = status, error[:300]

    def release(self) -> None:
        """No longer counted in its server's use, and recorded by none (another view takes it)."""
        self._gate_exit(handed_over=True)
        if self.in_use and self.profile is not None:
            recorder.end(self.profile)
        self.in_use = False

    def record_soon(self) -> None:
        """Hand the usage record to the recorder, which writes it off the request's path."""
        self._gate_exit()
        if self.caller is None:
            return
        self.release()
        recorder.record(self._fields())
        if self.caller.key is not None:
            recorder.key_used(self.caller.key)

    def _gate_exit(self, *, handed_over: bool = False) -> None:
        """Issue 29: free the fair queue's slot and charge the answer's usage (once)."""
        passage, self.passage = self.passage, None
        completion = self.completion_tokens if self.completion_tokens is not None else (self.counted_tokens or None)
        gate_exit(passage, prompt_tokens=self.prompt_tokens, completion_tokens=completion, handed_over=handed_over)

    def _fields(self) -> dict[str, Any]:
        ended = time.perf_counter()
        completion = self.completion_tokens if self.completion_tokens is not None else (self.counted_tokens or None)
        first = self.first_token_at or (ended if self.status == 200 and not self.stream else None)
        generating = ended - first if first is not None and self.stream else ended - self.began
        assert self.caller is not None
        return {
            "user": self.caller.user,
            "api_key": self.caller.key,
            "profile": self.profile,
            "model_name": self.profile.name[:100] if self.profile else UNKNOWN_MODEL,
            "api": self.api,
            "stream": self.stream,
            "status": self.status,
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "ttft_ms": (first - self.began) * 1000 if first is not None else None,
            "duration_ms": (ended - self.began) * 1000,
            "tokens_per_second": completion / generating if completion and generating > 0 else None,
        }
