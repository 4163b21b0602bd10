"""What one gateway request measured, turned into its usage record when the answer is done."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from gateway.limits.admission import CallerLimits
from gateway.limits.gate import Passage, gate_exit
from gateway.models import GatewayApi
from gateway.routing import Caller
from gateway.services import usage_record
from profiles.models import ServerProfile
from servers.services import server_use_end, server_use_still

log = logging.getLogger(__name__)
_pending: set[asyncio.Task[None]] = set()
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
    stamped_at: float = field(default_factory=time.perf_counter)  # last use written (at most every USE_STAMP_INTERVAL)
    stamping: asyncio.Task[None] | None = None
    # Issue 29's hook: the caller's limits (read in _prepare) and the passage through them and the
    # fair queue (gateway/limits/gate.py), given back when the request is recorded.
    limits: CallerLimits | None = None
    passage: Passage | None = None

    def token(self) -> None:
        self.counted_tokens += 1
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        if self.in_use and now - self.stamped_at >= USE_STAMP_INTERVAL:
            self._stamp_use(now)

    def _stamp_use(self, now: float) -> None:
        """Refresh the server's last use off the stream's path; one write at a time."""
        if self.profile is None or (self.stamping is not None and not self.stamping.done()):
            return
        self.stamped_at = now
        write = sync_to_async(_write_use, thread_sensitive=False)
        self.stamping = asyncio.get_running_loop().create_task(write(self.profile))
        _pending.add(self.stamping)
        self.stamping.add_done_callback(_pending.discard)

    def usage(self, usage: dict[str, Any] | None) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens = prompt if isinstance(prompt, int) else self.prompt_tokens
            self.completion_tokens = completion if isinstance(completion, int) else self.completion_tokens

    def fail(self, status: int, error: str) -> None:
        self.status, self.error = status, error[:300]

    def record_soon(self) -> None:
        """Write the usage record off the request's path (the answer does not wait for the INSERT)."""
        self._gate_exit()
        if self.caller is None:
            return
        release, self.in_use = (self.profile if self.in_use else None), False
        task = asyncio.get_running_loop().create_task(self._write(self._fields(), release))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    def _gate_exit(self) -> None:
        """Issue 29: free the fair queue's slot and charge the answer's usage (once)."""
        passage, self.passage = self.passage, None
        completion = self.completion_tokens if self.completion_tokens is not None else (self.counted_tokens or None)
        gate_exit(passage, prompt_tokens=self.prompt_tokens, completion_tokens=completion)

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

    @staticmethod
    async def _write(fields: dict[str, Any], release: ServerProfile | None) -> None:
        try:
            await sync_to_async(_write_record, thread_sensitive=False)(fields, release)
        except Exception:  # a lost record must never break an answer
            log.exception("could not write a usage record")


def _write_use(profile: ServerProfile) -> None:
    close_old_connections()
    try:
        server_use_still(profile=profile)
    except Exception:  # a missed stamp costs nothing: the next one, or the request's end, writes it
        log.exception("could not stamp the server's last use")


def _write_record(fields: dict[str, Any], release: ServerProfile | None) -> None:
    close_old_connections()
    if release is not None:
        server_use_end(profile=release)
    usage_record(**fields)
