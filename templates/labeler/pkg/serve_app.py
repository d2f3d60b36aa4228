"""The HTTP service: a Starlette application around the labeler and the micro-batcher.

The application starts answering at once; the voters load on the worker thread in the
background, and ``/readyz`` says 200 (and ``/v1/label`` takes requests) once they have, after
one warm-up row. Every label request's rows go through :class:`.batcher.MicroBatcher` to
:meth:`.engine.Labeler.label_texts`, the code the batch command labels with, so an answer
holds exactly the rows the batch command writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .batcher import MicroBatcher, Overloaded
from .config import LabelerSpec
from .engine import Labeler
from .serve_metrics import CONTENT_TYPE, ServeMetrics
from .serve_openapi import docs_page, openapi_document
from .serve_requests import Limits, RequestError, answer_rows, error_body, parse_label_request
from .tabular import unsafe_texts_note

WARM_UP_TEXT = "warm up"
LOADING_RETRY_AFTER = 2
"""Retry-After (seconds) while the voters load."""


class SafeJSONResponse(JSONResponse):
    """JSON in UTF-8, or with ASCII escapes when a record's field holds a lone surrogate (the
    same JSON value, answered as it came)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class ServeSettings:
    """How the service labels and what it takes."""

    text_column: str
    """The field of a record that holds its text."""
    min_agreement: float
    min_confidence: float
    max_batch_rows: int
    """Rows in one model batch at most."""
    max_wait: float
    """Seconds the oldest queued row waits for others to share its batch."""
    max_queue_rows: int
    """Rows accepted and not yet answered, at most; beyond, requests get 503."""
    limits: Limits
    version: str = "0"
    """The package's version, shown in the OpenAPI document."""


class Service:
    """The running state behind the routes: metrics, and the batcher once voters are loaded."""

    def __init__(
        self,
        spec: LabelerSpec,
        settings: ServeSettings,
        load_labeler: Callable[[], Labeler],
        on_load_error: Callable[[BaseException], None],
        on_ready: Callable[[float], None] | None = None,
    ) -> None:
        self.spec, self.settings = spec, settings
        self.load_labeler, self.on_load_error, self.on_ready = load_labeler, on_load_error, on_ready
        self.voters = [voter.name for voter in spec.voters]
        self.metrics = ServeMetrics()
        self.batcher: MicroBatcher | None = None
        self.document = openapi_document(
            spec, settings.text_column, self.voters, settings.limits, settings.version
        )

    def label_rows(self, labeler: Labeler) -> Callable[[list[str]], list[dict[str, Any]]]:
        settings = self.settings

        def run(texts: list[str]) -> list[dict[str, Any]]:
            return labeler.label_texts(texts, settings.min_agreement, settings.min_confidence)

        return run

    async def load(self, executor: ThreadPoolExecutor) -> None:
        """Load the voters on the worker thread, label one row, then take requests."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            labeler = await loop.run_in_executor(executor, self.load_labeler)
            label_rows = self.label_rows(labeler)
            await loop.run_in_executor(executor, label_rows, [WARM_UP_TEXT])
        except Exception as error:  # reported by on_load_error, which stops the service
            self.on_load_error(error)
            return
        settings = self.settings
        self.batcher = MicroBatcher(
            label_rows,
            executor,
            max_batch_rows=settings.max_batch_rows,
            max_wait=settings.max_wait,
            max_queue_rows=settings.max_queue_rows,
            metrics=self.metrics,
        )
        self.batcher.start()
        self.metrics.ready.set(1)
        if self.on_ready is not None:
            self.on_ready(time.monotonic() - started)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette):
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voters")
        loading = asyncio.get_running_loop().create_task(self.load(executor))
        try:
            yield
        finally:
            if self.batcher is not None:
                await self.batcher.stop()
            loading.cancel()
            executor.shutdown(wait=False, cancel_futures=True)

    async def label(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            rows = await self.answer(request)
            response: Response = SafeJSONResponse({"results": rows})
            self.metrics.rows.inc(len(rows))
        except RequestError as error:
            response = JSONResponse(error.body(), error.status, headers=error.headers)
        except Exception as error:  # a voter failed on this batch: 500, the service goes on
            print(f"error: labeling failed: {error!r}", file=sys.stderr, flush=True)
            response = JSONResponse(error_body("internal", f"labeling failed: {error}"), 500)
        self.metrics.requests.inc(label_value=str(response.status_code))
        self.metrics.latency.observe(time.perf_counter() - started)
        return response

    async def answer(self, request: Request) -> list[dict[str, Any]]:
        if self.batcher is None:
            raise RequestError(
                503, "loading", "the voters are still loading", retry_after=LOADING_RETRY_AFTER
            )
        limits = self.settings.limits
        body = await read_body(request, limits.max_body_bytes)
        parsed = parse_label_request(body, self.settings.text_column, limits)
        if parsed.unsafe_texts:
            where = f"a request of {len(parsed.texts)} texts"
            print(unsafe_texts_note(parsed.unsafe_texts, where), file=sys.stderr, flush=True)
        try:
            results = await self.batcher.submit(parsed.texts)
        except Overloaded as error:
            raise RequestError(503, "overloaded", str(error), error.retry_after) from None
        return answer_rows(parsed, results, self.voters)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.batcher is None:
            return JSONResponse({"status": "loading"}, 503)
        return JSONResponse({"status": "ready", "voters": self.voters})

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(docs_page(self.document))

    def app(self) -> Starlette:
        routes = [
            Route("/v1/label", self.label, methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics_text),
            Route("/openapi.json", self.openapi),
            Route("/docs", self.docs),
        ]
        return Starlette(routes=routes, lifespan=self.lifespan)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = RequestError(
        413, "body_too_large", f"the body is over {limit} bytes, the most the service reads"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
