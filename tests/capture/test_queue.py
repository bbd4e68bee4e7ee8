"""Delivery: bounded queues that drop instead of waiting, per-sink retries with backoff."""

from __future__ import annotations

import aiohttp

from gateway.capture.alerts import AlertNotice
from gateway.capture.queue import BoundedQueue, SinkWorker
from gateway.capture.service import CaptureService
from gateway.capture.sinks.webhook import WebhookSink
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.errors import Delivery, ErrorsPolicy
from gateway.policy.errors import WebhookSink as WebhookConfig
from tests.capture.conftest import Receiver
from tests.capture.test_processors import _event

NOTICE = AlertNotice("r", "fired", "rate(5xx) > 1/min", "2.00/min", 2, 60.0, ("hook",), 1.0)


def test_full_queue_drops_and_counts_without_waiting() -> None:
    """Offering to a full queue returns at once with False and counts the drop."""
    queue: BoundedQueue[int] = BoundedQueue(2)
    assert [queue.offer(i) for i in range(4)] == [True, True, False, False]
    assert queue.dropped == 2


async def test_service_submit_never_blocks_and_counts_drops() -> None:
    """With the intake full (no drain running), submit drops and the metric says so."""
    metrics = GatewayMetrics()
    service = CaptureService(ErrorsPolicy(delivery=Delivery(queue_size=3)), metrics)
    results = [service.submit(_event()) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert (
        metrics.registry.get_sample_value(
            "gateway_error_events_discarded_total", {"cause": "queue_full"}
        )
        == 2
    )
    assert (
        metrics.registry.get_sample_value("gateway_error_events_total", {"reason": "upstream_5xx"})
        == 5
    )


def _worker(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    results: list[tuple[str, str]],
    delays: list[float],
    retries: int = 3,
) -> SinkWorker:
    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    sink = WebhookSink(WebhookConfig(name="hook", type="webhook", url=receiver.url), session)
    return SinkWorker(
        sink, queue_size=10, batch_size=10, retries=retries, backoff=0.5, timeout=5,
        on_result=lambda name, result: results.append((name, result)), sleep=no_wait,
    )  # fmt: skip


async def test_failed_delivery_is_retried_with_exponential_backoff(receiver: Receiver) -> None:
    """Two 500s then a 200: two retries, 0.5 s then 1 s apart, and the batch arrives once."""
    receiver.fail = 2
    results: list[tuple[str, str]] = []
    delays: list[float] = []
    async with aiohttp.ClientSession() as session:
        worker = _worker(receiver, session, results, delays)
        worker.start()
        worker.offer(NOTICE)
        await worker.queue.join()
        await worker.close(1.0)
    assert [r for _, r in results] == ["retry", "retry", "ok"]
    assert delays == [0.5, 1.0]
    assert len(receiver.bodies) == 1


async def test_a_sink_that_keeps_failing_is_given_up_and_the_worker_goes_on(
    receiver: Receiver,
) -> None:
    """After its retries a batch is counted as failed; the next batch is still delivered."""
    receiver.fail = 2
    results: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as session:
        worker = _worker(receiver, session, results, [], retries=1)
        worker.start()
        worker.offer(NOTICE)
        await worker.queue.join()
        worker.offer(NOTICE)
        await worker.queue.join()
        await worker.close(1.0)
    assert [r for _, r in results] == ["retry", "failed", "ok"]
    assert receiver.attempts == 3 and len(receiver.bodies) == 1


async def test_batches_take_what_is_waiting(receiver: Receiver) -> None:
    """Items queued together go out in one POST."""
    results: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as session:
        worker = _worker(receiver, session, results, [])
        for _ in range(4):
            worker.offer(NOTICE)
        worker.start()
        await worker.queue.join()
        await worker.close(1.0)
    assert len(receiver.bodies) == 1 and len(receiver.bodies[0]["alerts"]) == 4
