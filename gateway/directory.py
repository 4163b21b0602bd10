"""What the gateway remembers between requests: which key belongs to whom (and what it may use),
and where each model answers. A request whose key and model are both remembered is answered
without a database read (gateway/fastpath.py); any other goes the whole way (gateway/views.py),
which remembers what it found.

Only good news is remembered: a usable key, a local server that answers. A refusal (unknown key,
stopped server, another node's model) always reads the database again, so a key made a moment
ago or a server that has just come up is never refused from memory. Forgetting: whoever changes
keys, people, profiles or servers bumps the `routes` change counter (gateway/receivers.py, the
supervisor's `transition`); each process reads it at most every CHECK_EVERY seconds and forgets
everything when it moved, and never answers from a memory whose last check is older than
TRUST_FOR. A revoked key is refused within a second on every worker and node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.http import HttpRequest

from core.changes import changes_listen, changes_read
from gateway.keys import key_from_headers, key_hash
from gateway.routing import Caller, Target

CHECK_EVERY = 0.25  # seconds: a request older than this since the last check starts one (not waited for)
TRUST_FOR = 0.75  # seconds: past this since the last check, a request waits for a new one


def _counter_read() -> int:
    close_old_connections()  # a thread of the pool: its connection may be old or broken
    return changes_read()


@dataclass
class Directory:
    generation: int | None = None  # the counter's value when what is kept was valid
    checked_at: float = float("-inf")
    callers: dict[str, Caller] = field(default_factory=dict)  # by the key's SHA-256
    targets: dict[str, Target] = field(default_factory=dict)  # by the model's name, lowercased
    checking: asyncio.Future[None] | None = None

    def forget(self) -> None:
        """Drop everything kept and check the counter before the next answer from memory."""
        self.callers, self.targets = {}, {}
        self.generation, self.checked_at = None, float("-inf")

    async def current(self) -> bool:
        """Whether what is kept may be used now: checks the counter when due (waiting for the
        check only when the last one is too old to trust). False when the check failed."""
        age = time.monotonic() - self.checked_at
        if age < CHECK_EVERY:
            return True
        if self.checking is None or self.checking.done():
            self.checking = asyncio.ensure_future(self._check())
        if age < TRUST_FOR:
            return True
        with contextlib.suppress(Exception):
            await asyncio.shield(self.checking)
        return time.monotonic() - self.checked_at < TRUST_FOR

    async def _check(self) -> None:
        began = time.monotonic()
        value = await sync_to_async(_counter_read, thread_sensitive=False)()
        if value != self.generation:
            self.callers, self.targets = {}, {}
            self.generation = value
        self.checked_at = began

    def caller(self, secret_hash: str) -> Caller | None:
        caller = self.callers.get(secret_hash)
        if caller is not None and caller.key is not None and not caller.key.is_usable():
            return None  # expired since: the database says why
        return caller

    def target(self, model: str) -> Target | None:
        return self.targets.get(model.strip().lower())

    def remember_found(
        self, request: HttpRequest, *, caller: Caller, model: str, target: Target, generation: int | None
    ) -> None:
        """Keep what Django's view found for `request` (only a key's: a session is Django's)."""
        if caller.key is None:
            return
        secret = key_from_headers(request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", ""))
        self.remember(secret_hash=key_hash(secret), caller=caller, model=model, target=target, generation=generation)

    def remember(self, *, secret_hash: str, caller: Caller, model: str, target: Target, generation: int | None) -> None:
        """Keep what a request found in the database, unless a change was counted meanwhile
        (`generation` is the value seen before the reads)."""
        if generation is None or generation != self.generation:
            return
        caller.allowed_profile_ids  # noqa: B018  (read now, in the thread that may use the ORM)
        self.callers[secret_hash] = caller
        self.targets[model.strip().lower()] = target


directory = Directory()
changes_listen(directory.forget)
