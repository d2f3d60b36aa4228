"""Dynamic micro-batching: rows of concurrent requests share one model batch.

Requests queue their rows; one collector task on the event loop takes up to
``max_batch_rows`` rows from the head of the queue once that many wait, or once the oldest
has waited ``max_wait`` seconds, and hands them to the single worker thread that runs the
voters (the event loop never runs a model). Results go back to each request in its own
order; a request larger than a batch is spread over several. While the worker is busy, new
rows gather, so under load batches fill without waiting. Rows that waited through a batch still
wait ``max_wait`` after it ends: the clients it just answered are sending their next rows, and a
batch that takes them too costs far less than one more batch.

The queue is bounded in rows (``max_queue_rows``, rows waiting or in the running batch): a
request that would overflow it is refused at once with :class:`Overloaded`, never parked.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .serve_metrics import ServeMetrics

LabelRows = Callable[[list[str]], list[dict[str, Any]]]
"""Runs the voters: texts in, one result row per text out (called on the worker thread)."""

RETRY_AFTER_MAX = 60


class Overloaded(Exception):
    """The queue has no room for a request's rows."""

    def __init__(self, queued_rows: int, retry_after: int) -> None:
        super().__init__(f"the queue holds {queued_rows} rows; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Job:
    """One request's rows on their way through the queue."""

    texts: Sequence[str]
    future: asyncio.Future
    enqueued: float
    results: list[Any] = field(default_factory=list)
    taken: int = 0
    """Rows handed to a batch so far."""
    answered: int = 0
    """Rows whose results are in."""


@dataclass(frozen=True)
class _Slice:
    job: _Job
    start: int
    stop: int


class MicroBatcher:
    """Gathers rows from concurrent requests into model batches run on one worker thread."""

    def __init__(
        self,
        label_rows: LabelRows,
        executor: Executor,
        *,
        max_batch_rows: int,
        max_wait: float,
        max_queue_rows: int,
        metrics: ServeMetrics,
    ) -> None:
        self.label_rows = label_rows
        self.executor = executor
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self.max_queue_rows = max_queue_rows
        self.metrics = metrics
        self.waiting: deque[_Job] = deque()
        self.queued_rows = 0
        """Rows accepted and not yet answered."""
        self.rows_per_second: float | None = None
        """Recent throughput of the voters, for Retry-After."""
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._batch_ended = 0.0
        """When the worker last finished a batch (monotonic seconds)."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Finish every accepted row, then stop the collector."""
        while self.queued_rows and self._task is not None and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """The voters' result rows for ``texts``, batched with other requests' rows."""
        if not texts:
            return []
        if self.queued_rows + len(texts) > self.max_queue_rows:
            raise Overloaded(self.queued_rows, self.retry_after())
        job = _Job(texts, asyncio.get_running_loop().create_future(), time.monotonic())
        job.results = [None] * len(texts)
        self.waiting.append(job)
        self._count_queued(len(texts))
        self._wakeup.set()
        # The job is finished by the collector even if this request is abandoned.
        return await asyncio.shield(job.future)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained enough to take a request."""
        if not self.rows_per_second:
            return 1
        return max(1, min(RETRY_AFTER_MAX, math.ceil(self.queued_rows / self.rows_per_second)))

    def _count_queued(self, rows: int) -> None:
        self.queued_rows += rows
        self.metrics.queue_rows.set(self.queued_rows)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            batch = self._take()
            texts = [text for part in batch for text in part.job.texts[part.start : part.stop]]
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.label_rows, texts)
            except Exception as error:  # the requests in this batch answer 500, others go on
                self._fail(batch, error)
                self._batch_ended = time.monotonic()
                continue
            self._record(len(texts), time.perf_counter() - started)
            self._answer(batch, results)
            self._batch_ended = time.monotonic()

    async def _gather(self) -> None:
        """Wait for a batch's worth of rows, or until the oldest row (or the worker, if it
        finished a batch since) has waited ``max_wait``."""
        while not self.waiting:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = max(self.waiting[0].enqueued, self._batch_ended) + self.max_wait
        loop = asyncio.get_running_loop()
        while self._untaken() < self.max_batch_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            alarm = loop.call_later(remaining, self._wakeup.set)
            await self._wakeup.wait()
            alarm.cancel()

    def _untaken(self) -> int:
        return sum(len(job.texts) - job.taken for job in self.waiting)

    def _take(self) -> list[_Slice]:
        """Up to ``max_batch_rows`` rows from the head of the queue, oldest first."""
        batch: list[_Slice] = []
        room = self.max_batch_rows
        while self.waiting and room:
            job = self.waiting[0]
            stop = min(len(job.texts), job.taken + room)
            batch.append(_Slice(job, job.taken, stop))
            room -= stop - job.taken
            job.taken = stop
            if job.taken == len(job.texts):
                self.waiting.popleft()
        return batch

    def _record(self, rows: int, seconds: float) -> None:
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_seconds.observe(seconds)
        rate = rows / max(seconds, 1e-6)
        previous = self.rows_per_second
        self.rows_per_second = rate if previous is None else 0.7 * previous + 0.3 * rate

    def _answer(self, batch: list[_Slice], results: list[dict[str, Any]]) -> None:
        offset = 0
        for part in batch:
            rows = part.stop - part.start
            part.job.results[part.start : part.stop] = results[offset : offset + rows]
            offset += rows
            part.job.answered += rows
            self._count_queued(-rows)
            if part.job.answered == len(part.job.texts) and not part.job.future.done():
                part.job.future.set_result(part.job.results)

    def _fail(self, batch: list[_Slice], error: Exception) -> None:
        """Fail every request with rows in ``batch``; their rows still queued are dropped."""
        for job in {part.job for part in batch}:
            self._count_queued(-(len(job.texts) - job.answered))
            job.answered = len(job.texts)
            if job in self.waiting:
                self.waiting.remove(job)
            if not job.future.done():
                job.future.set_exception(error)
