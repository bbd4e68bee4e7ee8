"""Bounded queues drained by background tasks: nothing here ever waits on the request path.

`offer` never blocks: a full queue drops the item and says so. Each sink has its own worker,
so a slow or failing sink (retrying with backoff) never holds back the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway.capture.sinks import Item, Sink
from gateway.observability.logs import get_logger

log = get_logger("gateway.capture")

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
ResultHook = Callable[[str, str], None]
"""Called with (sink name, result) for each batch outcome: ok, retry, failed, queue_full."""

MAX_BACKOFF = 30.0


class BoundedQueue(Generic[T]):
    """An asyncio queue that drops instead of waiting when full, and counts what it dropped."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=size)
        self.dropped = 0

    def offer(self, item: T) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            return False
        return True

    async def batch(self, size: int) -> list[T]:
        """Wait for one item, then take whatever else is already waiting, up to `size`."""
        items = [await self._queue.get()]
        while len(items) < size:
            try:
                items.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return items

    def done(self, count: int) -> None:
        for _ in range(count):
            self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()

    def __len__(self) -> int:
        return self._queue.qsize()


class SinkWorker:
    """One sink's queue and the task that delivers its batches, retrying with backoff."""

    def __init__(
        self,
        sink: Sink,
        *,
        config: object = None,
        queue_size: int,
        batch_size: int,
        retries: int,
        backoff: float,
        timeout: float,
        on_result: ResultHook,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.sink = sink
        self.config = config  # what the sink was built from, to tell when a reload changes it
        self.queue: BoundedQueue[Item] = BoundedQueue(queue_size)
        self._batch_size = batch_size
        self._retries = retries
        self._backoff = backoff
        self._timeout = timeout
        self._on_result = on_result
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"capture-sink-{self.sink.name}")

    def offer(self, item: Item) -> None:
        if not self.queue.offer(item):
            self._on_result(self.sink.name, "queue_full")

    async def _run(self) -> None:
        while True:
            batch = await self.queue.batch(self._batch_size)
            try:
                await self._deliver(batch)
            finally:
                self.queue.done(len(batch))

    async def _deliver(self, batch: list[Item]) -> None:
        for attempt in range(self._retries + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    await self.sink.send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any sink failure is logged and counted, never raised
                last = attempt == self._retries
                # The type only: a message may quote a URL with a token in it.
                log.warning(
                    "sink_delivery_failed",
                    sink=self.sink.name,
                    attempt=attempt + 1,
                    error_type=type(exc).__name__,
                    items=len(batch),
                    gave_up=last,
                )
                self._on_result(self.sink.name, "failed" if last else "retry")
                if not last:
                    await self._sleep(min(self._backoff * 2**attempt, MAX_BACKOFF))
            else:
                self._on_result(self.sink.name, "ok")
                return

    async def close(self, grace: float) -> None:
        """Deliver what is queued (for up to `grace` seconds), then stop and close the sink."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.sink.close()
        except Exception as exc:  # closing a broken sink must not break shutdown
            log.warning("sink_close_failed", sink=self.sink.name, error_type=type(exc).__name__)
