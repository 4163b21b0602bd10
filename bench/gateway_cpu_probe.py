"""The two processes of bench_gateway_cpu:

- `python -m bench.gateway_cpu_probe upstream PORT`: a canned model server on loopback that answers
  every chat completion at once with the same small answer (a process of its own, so its CPU is
  not counted);
- `python -m bench.gateway_cpu_probe measure PORT MODEL ROUNDS REQUESTS`, with a stack's
  environment (its data directory and migrated database): a key, a profile and a running server
  row pointing at that upstream, then ROUNDS rounds of REQUESTS chat completions sent in-process
  to `mlxmanager.asgi.application` (httpx.ASGITransport), the process's CPU time read around each
  round until its usage records are written; interleaved with rounds of the same client against
  a bare ASGI app answering the same bytes (what the client and the transport cost). Prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = json.dumps(
    {
        "id": "chatcmpl-canned",
        "object": "chat.completion",
        "created": 1,
        "model": "default_model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()
BODY = {"model": "canned", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


class Canned(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as mlx_lm.server's clients use it
    # The headers and the body go in two writes: without this, Nagle's algorithm holds the body
    # until the client's delayed ACK (40 ms), and every request waits for it.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(ANSWER)

    def do_GET(self) -> None:
        self._answer(b'{"status": "ok"}')

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def upstream(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), Canned).serve_forever()


def seed(port: int, model: str) -> str:
    from accounts.models import User
    from gateway.services import key_create
    from profiles.models import ServerProfile
    from servers.models import Server

    user = User.objects.create_superuser(email="cpu@example.com", password="bench-password-42")
    profile = ServerProfile.objects.create(name="canned", model=model, port=port)
    Server.objects.update_or_create(profile=profile, defaults={"state": "running", "port": port, "pid": None})
    return key_create(user=user, name="cpu").secret


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: an ASGI app that reads the request and answers the canned bytes."""
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


class Lifespan:
    """ASGI lifespan as gunicorn's `asgi` worker sends it by default ("auto"): startup before the
    first request, shutdown after the last; an app that refuses lifespan goes on without it."""

    def __init__(self, app: Any) -> None:
        self.app, self.inbox, self.outbox = app, asyncio.Queue[dict[str, Any]](), asyncio.Queue[dict[str, Any]]()
        self.task: asyncio.Task[None] | None = None

    async def _say(self, message: str) -> None:
        await self.inbox.put({"type": f"lifespan.{message}"})
        assert self.task is not None
        answer = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait([answer, self.task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if answer.done() and answer.result()["type"].endswith("failed"):
            raise RuntimeError(f"the app's lifespan {message} failed: {answer.result()}")
        answer.cancel()
        if self.task.done():
            self.task.exception()  # an app without lifespan raised: "auto" goes on without it

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self._say("startup")

    async def shutdown(self) -> None:
        if self.task is not None and not self.task.done():
            await self._say("shutdown")


async def measure(secret: str, rounds: int, requests: int) -> dict[str, list[float]]:
    import httpx
    from asgiref.sync import sync_to_async

    from gateway.models import UsageRecord
    from mlxmanager.asgi import application

    count = sync_to_async(lambda: UsageRecord.objects.count(), thread_sensitive=False)
    auth = {"Authorization": f"Bearer {secret}"}
    gateway = httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1")
    baseline = httpx.AsyncClient(transport=httpx.ASGITransport(app=bare), base_url="http://127.0.0.1")  # type: ignore[arg-type]
    out: dict[str, list[float]] = {"with_records": [], "answers_only": [], "baseline": []}

    async def one_round(client: httpx.AsyncClient, records: bool) -> tuple[float, float]:
        before = await count() if records else 0
        began = time.process_time()
        for _ in range(requests):
            answer = await client.post("/v1/chat/completions", json=BODY, headers=auth)
            if answer.status_code != 200:
                raise RuntimeError(f"the gateway answered {answer.status_code}: {answer.text[:300]}")
        answered = time.process_time()
        deadline = time.monotonic() + 60
        while records and await count() < before + requests:
            if time.monotonic() > deadline:
                raise RuntimeError("the usage records were not written within 60 s")
            await asyncio.sleep(0.005)
        done = time.process_time()
        return (answered - began) * 1000 / requests, (done - began) * 1000 / requests

    lifespan = Lifespan(application)
    await lifespan.startup()
    await one_round(gateway, True)  # warm: imports, connections, caches
    await one_round(baseline, False)
    for _ in range(rounds):
        answers_only, with_records = await one_round(gateway, True)
        out["answers_only"].append(answers_only)
        out["with_records"].append(with_records)
        out["baseline"].append((await one_round(baseline, False))[1])
    await lifespan.shutdown()
    return out


def main(argv: list[str]) -> int:
    if argv[0] == "upstream":
        upstream(int(argv[1]))
        return 0
    import django

    django.setup()
    port, model, rounds, requests = int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    secret = seed(port, model)
    print(json.dumps(asyncio.run(measure(secret, rounds, requests))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
