"""The app as gunicorn's `asgi` worker serves it: `/v1/` (async views that relay streams) through
Django's own ASGI handler, every other path (sync page views) through the same middleware run
synchronously, in one hop to a small pool of threads.

Why: under Django's ASGI handler a sync view costs about 19 thread hops (each sync middleware's
`process_request` and `process_response`, the view, the signals), each waiting for a core on a
busy machine, and a new thread, hence a new database connection, per request. Here a page costs
one hop to a thread that keeps its connection, as under a WSGI server; the `/v1/` views stay
async, so a stream waits on its model server without a thread. Measured in docs/performance.md, "Serving".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import django
from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlxmanager.settings")

ASYNC_PREFIXES = ("/v1/",)  # the paths whose views are async (gateway/urls.py)
# Page requests one worker answers at once (the rest wait their turn), as gunicorn's gthread
# worker's `threads`; each thread keeps one database connection.
PAGE_THREADS = int(os.environ.get("WEB_PAGE_THREADS", "4"))


class OneThreadHandler(ASGIHandler):
    """Django's ASGI handler without its per-request ThreadSensitiveContext, which starts a thread,
    hence opens a database connection, for each request (the pages run in their own pool)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


class SyncPagesHandler(OneThreadHandler):
    """Django's ASGI handler with a page's whole request/response cycle run synchronously in one
    hop, as a WSGI server runs it. Django's own `handle` makes three hops for a sync view (the
    request_started receivers and `response.close()`'s request_finished ones on asgiref's one
    shared thread, the view in between) and races the view against a disconnect listener task."""

    def __init__(self, *, threads: int) -> None:
        super().__init__()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pages")

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        response = await sync_to_async(self._respond, thread_sensitive=False, executor=self.pool)(scope, body_file)
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:
            pass  # the client went away meanwhile
        finally:
            if response.streaming:  # closed once its last part is out, in its thread too
                await sync_to_async(self._close, thread_sensitive=False, executor=self.pool)(response, body_file)

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        # In the thread that owns the database connection: drop it when too old or broken.
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = self.get_response(request) if request is not None else cast(HttpResponseBase, error_response)
        response._handler_class = self.__class__  # type: ignore[attr-defined]  # request_finished's sender, as Django sets it
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            self._close(response, body_file)  # its content is all in memory: sent after this
        elif isinstance(response, StreamingHttpResponse) and not response.is_async:
            self._make_async(response)
        return response

    def _make_async(self, response: StreamingHttpResponse) -> None:
        """Give a streamed response with a sync iterator an async one, as Django's ASGI handler
        wants (it warns for each sync one, then reads it whole on its shared thread). A file's
        parts (FileResponse: static files, log downloads) are read one at a time in the pool; any
        other iterator (the audit CSV reads the database as it goes) whole, here, in the thread
        that owns its database connection."""
        content = cast(Iterator[bytes], response.streaming_content)
        if isinstance(response, FileResponse):
            pull = sync_to_async(_next_part, thread_sensitive=False, executor=self.pool)

            async def file_parts() -> AsyncIterator[bytes]:
                while (part := await pull(content)) is not None:
                    yield part

            response.streaming_content = file_parts()
        else:
            whole = list(content)

            async def listed() -> AsyncIterator[bytes]:
                for part in whole:
                    yield part

            response.streaming_content = listed()

    @staticmethod
    def _close(response: HttpResponseBase, body_file: Any) -> None:
        response.close()  # request_finished's receivers
        body_file.close()


def _next_part(parts: Iterator[bytes]) -> bytes | None:
    return next(parts, None)


def _router() -> Any:
    django.setup(set_prefix=False)
    from gateway import fastpath  # needs the apps loaded

    gateway = ASGIHandler()  # Django's own, with its thread per request for the ORM's hops
    pages = SyncPagesHandler(threads=PAGE_THREADS)

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (api := fastpath.fast_api(scope)) is not None:
            await fastpath.serve(scope, receive, send, api=api, django=gateway)
            return
        path = scope.get("path", "")
        handler = gateway if scope["type"] != "http" or path.startswith(ASYNC_PREFIXES) else pages
        await handler(scope, receive, send)

    return application


application = _router()
