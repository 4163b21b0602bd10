"""What the gateway must not lose or keep too long, through the stack as `make run` serves it:

- usage records: 1,000 small completions answered, then SIGTERM to the web server (the gunicorn
  master, as a service manager stops it): exactly 1,000 records must be in the database;
- a revoked key: revoked through the service (gateway.services.key_revoke, in `manage.py shell`)
  while four connections keep sending completions with it; how long after the revocation a
  request was still answered (0: every request sent after it was refused)."""

from __future__ import annotations

import itertools
import statistics
import threading
import time

import httpx

from bench.common import CHAT, Result, summarize
from bench.gateway_run import GatewayRun

RECORDS = 1_000
SENDERS = 4  # connections at once (gunicorn spreads them over its workers)
REVOCATIONS = 5
REFUSED_FOR = 1.5  # seconds of refusals on every connection that end a revocation round
GIVE_UP = 20.0  # seconds after the revocation: still answered then is reported as that

REVOKE = """
import time
from gateway.models import ApiKey
from gateway.services import key_revoke
key = ApiKey.objects.get(name="bench-{index}")
key_revoke(key=key, by=key.user)
print(time.time())
"""

RECORDS_OF = """
from gateway.models import UsageRecord
print(UsageRecord.objects.filter(api_key__name="bench-{index}").count())
"""


def _ask(client: httpx.Client) -> int:
    return client.post("/chat/completions", json={"model": "tiny", **CHAT, "max_tokens": 1}).status_code


def _records(gateway: GatewayRun, index: int) -> tuple[int, int]:
    """(found, expected): RECORDS completions answered with key `index`, SIGTERM, records counted."""
    answered: list[int] = []
    per_sender = RECORDS // SENDERS

    def send() -> None:
        with gateway.client_through(gateway.secrets[index]) as client:
            answered.extend(status for status in (_ask(client) for _ in range(per_sender)) if status == 200)

    threads = [threading.Thread(target=send) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gateway.sigterm_web()
    found = int(gateway.manage_shell(RECORDS_OF.format(index=index)).strip().splitlines()[-1])
    return found, len(answered)


def _revocation(gateway: GatewayRun, index: int) -> tuple[float, float]:
    """Milliseconds after `key_revoke` returned that a request with the key was still answered,
    and the median time between two requests of one connection (the figure's resolution)."""
    sent: list[list[tuple[float, int]]] = [[] for _ in range(SENDERS)]
    stop = threading.Event()

    def send(mine: list[tuple[float, int]]) -> None:
        with gateway.client_through(gateway.secrets[index]) as client:
            while not stop.is_set():
                began = time.time()
                mine.append((began, _ask(client)))

    threads = [threading.Thread(target=send, args=(mine,)) for mine in sent]
    for thread in threads:
        thread.start()
    try:
        while not all(sum(1 for _, s in mine if s == 200) >= 3 for mine in sent):
            time.sleep(0.05)
        revoked = float(gateway.manage_shell(REVOKE.format(index=index)).strip().splitlines()[-1])

        def settled() -> bool:
            latest = time.time()
            return all(
                any(t > revoked for t, _ in mine) and all(s != 200 for t, s in mine if t > latest - REFUSED_FOR)
                for mine in sent
            )

        while not settled() and time.time() < revoked + GIVE_UP:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    answered_after = [t for mine in sent for t, s in mine if s == 200 and t > revoked]
    gaps = [(b[0] - a[0]) * 1000 for mine in sent for a, b in itertools.pairwise(mine)]
    return (max(0.0, (max(answered_after) - revoked) * 1000) if answered_after else 0.0), statistics.median(gaps)


def run() -> list[Result]:
    with GatewayRun(keys=REVOCATIONS + 2) as gateway:
        delays, gaps = zip(*(_revocation(gateway, index) for index in range(1, REVOCATIONS + 1)), strict=True)
        found, expected = _records(gateway, REVOCATIONS + 1)
    print(f"  usage records after {expected} answered requests and SIGTERM: {found}/{expected}", flush=True)
    return [
        summarize(
            "gateway: revoked key, last request answered after revoke",
            "ms",
            list(delays),
            baseline="0: refused from the next request",
            baseline_samples=[],
            goal=1000.0,
            note=f"{SENDERS} connections sending completions with the key, one every {statistics.median(gaps):.0f} ms "
            "each (the resolution); the latest over them, per revocation",
        ),
        summarize(
            "gateway: usage records lost or extra, 1,000 requests + SIGTERM",
            "records",
            [float(abs(expected - found))],
            baseline="",
            baseline_samples=[],
            goal=0.0,
            note=f"found/expected: {found}/{expected} records after SIGTERM to the gunicorn master",
            found=found,
            expected=expected,
        ),
    ]
