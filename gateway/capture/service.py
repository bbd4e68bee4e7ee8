"""The capture service: intake queue, processor chain, groups, alert rules and sink workers.

The request path calls only `observe` and `submit`, which count and enqueue; everything else
runs in two background tasks (the drain and the alert ticker) and in the sink workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from gateway.capture.alerts import AlertEngine, AlertRuleSpec, Clock
from gateway.capture.events import ErrorEvent
from gateway.capture.groups import GroupStore
from gateway.capture.processors import (
    Processor,
    dropper,
    fingerprinter,
    grouper,
    run_chain,
    sampler,
    scrubber,
)
from gateway.capture.queue import BoundedQueue, SinkWorker
from gateway.capture.reasons import category_of
from gateway.capture.scrubbing import Scrubber
from gateway.capture.shared_groups import SHARED_SCHEMES, RedisGroups
from gateway.capture.sinks import Item, Sink
from gateway.capture.sinks.email import EmailSink
from gateway.capture.sinks.sentry import SentrySink
from gateway.capture.sinks.webhook import WebhookSink
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.errors import ErrorsPolicy
from gateway.policy.errors import Sink as SinkConfig

log = get_logger("gateway.capture")

STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class CompiledCapture:
    """The `errors:` block turned into what the request path and the drain need."""

    config: ErrorsPolicy
    capture: frozenset[str]
    scrubber: Scrubber
    processors: tuple[Processor, ...]


class CaptureService:
    """One per process; opened and closed by the proxy app's cleanup context."""

    def __init__(
        self,
        config: ErrorsPolicy,
        metrics: GatewayMetrics,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        rng: random.Random | None = None,
        store_url: str | None = None,
    ) -> None:
        self.metrics = metrics
        self.store_url = store_url
        self.shared: RedisGroups | None = None
        self.groups = GroupStore(config.max_groups)
        self.recent: deque[dict[str, object]] = deque(maxlen=config.recent)
        self.alerts = AlertEngine(clock=clock, wall=wall)
        self.intake: BoundedQueue[ErrorEvent] = BoundedQueue(config.delivery.queue_size)
        self.salt = os.urandom(16)  # client hashes cannot be joined across restarts
        self._rng = rng
        self.compiled = self._compile(config)
        self.workers: dict[str, SinkWorker] = {}
        self._sink_configs: tuple[SinkConfig, ...] = ()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: list[asyncio.Task[None]] = []

    # --- the request path: counting and enqueueing only ------------------------------------

    def observe(self, config: ErrorsPolicy, status: int, reason: str | None) -> None:
        """Every response feeds the alert windows; a reloaded policy is picked up here."""
        if config is not self.compiled.config:
            self.compiled = self._compile(config)
        self.alerts.record(status, reason, category_of(reason) if reason else None)

    def wants(self, reason: str) -> bool:
        capture = self.compiled.capture
        return reason in capture or category_of(reason) in capture

    def submit(self, event: ErrorEvent) -> bool:
        """Queue an event for the drain; when the queue is full it is dropped and counted."""
        self.metrics.error_events.labels(event.reason).inc()
        if self.intake.offer(event):
            return True
        self.metrics.error_events_discarded.labels("queue_full").inc()
        return False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)
        if self.store_url and self.store_url.startswith(SHARED_SCHEMES):
            self.shared = RedisGroups(self.store_url, max_groups=self.groups.max_groups)
            self.groups.outbox = []
        self._sync_sinks()
        self._tasks = [
            asyncio.create_task(self._drain(), name="capture-drain"),
            asyncio.create_task(self._tick(), name="capture-alerts"),
        ]

    async def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """Process what is queued (for up to `grace` s), then stop the tasks and close the sinks."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.intake.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(
            *self._closing, *(worker.close(grace) for worker in self.workers.values())
        )
        self.workers.clear()
        if self._session is not None:
            await self._session.close()
        if self.shared is not None:
            await self.shared.close()

    async def flush(self) -> None:
        """Wait until every queued event and notice has been handed to its sinks (tests)."""
        await self.intake.join()
        for worker in list(self.workers.values()):
            await worker.queue.join()

    # --- the background ----------------------------------------------------------------------

    async def _drain(self) -> None:
        while True:
            batch = await self.intake.batch(self.compiled.config.delivery.batch_size)
            try:
                for event in batch:
                    try:
                        self.process(event)
                    except Exception as exc:  # one bad event must not stop the drain
                        self.metrics.error_events_discarded.labels("processor_error").inc()
                        log.error("capture_processing_failed", error_type=type(exc).__name__)
                await self._share()
            finally:
                self.intake.done(len(batch))

    async def _share(self) -> None:
        outbox = self.groups.outbox
        if self.shared is not None and outbox:
            self.groups.outbox = []
            await self.shared.record(outbox)

    async def group_snapshot(self) -> tuple[list[dict[str, Any]], str]:
        """The groups and where they come from: Redis (all replicas) or this process."""
        if self.shared is not None:
            try:
                return await self.shared.snapshot(), "redis"
            except (RedisError, OSError) as exc:
                log.warning("shared_groups_unavailable", error_type=type(exc).__name__)
        return self.groups.snapshot(), "memory"

    def process(self, raw: ErrorEvent) -> ErrorEvent | None:
        """Run the chain; keep the result for the admin port and hand it to the sinks."""
        event, dropped_by = run_chain(self.compiled.processors, raw)
        self.metrics.error_groups.set(len(self.groups))
        if event is None:
            self.metrics.error_events_discarded.labels(dropped_by or "drop").inc()
            return None
        self.recent.append(event.to_dict())
        log.info(
            "error_event",
            event_id=event.id,
            request_id=event.request_id,  # logged off the request's task: no context to merge
            reason=event.reason,
            route=event.route,
            status=event.status,
            fingerprint=event.fingerprint,
            group_count=event.group_count,
        )
        for worker in self.workers.values():
            if self._wants_events(worker.sink.name):
                worker.offer(event)
        return event

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.compiled.config.delivery.alert_interval)
            try:
                self._sync_sinks()
                self.evaluate_alerts()
            except Exception as exc:  # the ticker must outlive a bad rule or sink config
                log.error("alert_tick_failed", error_type=type(exc).__name__)

    def evaluate_alerts(self) -> None:
        """Turn the rules' transitions into notices for their sinks, the log and the metrics."""
        notices, suppressed = self.alerts.evaluate()
        for rule in suppressed:
            self.metrics.alerts.labels(rule, "suppressed").inc()
            log.info("alert_suppressed", alert=rule, why="cooldown")
        for notice in notices:
            self.metrics.alerts.labels(notice.rule, notice.state).inc()
            log.warning(
                "alert_" + notice.state,
                alert=notice.rule,
                condition=notice.condition,
                value=notice.value,
                requests=notice.requests,
            )
            self.recent.append(notice.to_dict())
            self._deliver(notice, notice.sinks)

    def _deliver(self, item: Item, sinks: tuple[str, ...]) -> None:
        for name in sinks:
            worker = self.workers.get(name)
            if worker is not None:
                worker.offer(item)

    def _wants_events(self, name: str) -> bool:
        return any(s.name == name and s.events for s in self.compiled.config.sinks)

    # --- compiling the policy block ----------------------------------------------------------

    def _compile(self, config: ErrorsPolicy) -> CompiledCapture:
        scrub = Scrubber(
            headers=config.scrub.headers,
            fields=config.scrub.fields,
            patterns=config.scrub.patterns,
            custom_patterns=config.scrub.custom_patterns,
        )
        self.groups.max_groups = config.max_groups
        if self.shared is not None:
            self.shared.max_groups = config.max_groups
        if self.recent.maxlen != config.recent:
            self.recent = deque(self.recent, maxlen=config.recent)
        self.alerts.replace(
            AlertRuleSpec(rule.name, rule.when, rule.min_requests, rule.cooldown, rule.sinks)
            for rule in config.alerts
        )
        processors: tuple[Processor, ...] = (
            scrubber(scrub, config.body_excerpt),
            fingerprinter(config.fingerprint),
            dropper((rule.reason, rule.route, rule.status) for rule in config.drop),
            grouper(self.groups),
            sampler(config.sample, self._rng),
        )
        return CompiledCapture(config, frozenset(config.capture), scrub, processors)

    def _sync_sinks(self) -> None:
        """(Re)build the workers of sinks whose configuration changed; keep the others."""
        configs = self.compiled.config.sinks
        if configs == self._sink_configs or self._session is None:
            return
        previous, self._sink_configs = self.workers, configs
        self.workers = {}
        for config in configs:
            old = previous.pop(config.name, None)
            if old is not None and old.config == config:
                self.workers[config.name] = old
                continue
            if old is not None:
                previous[config.name] = old
            worker = self._worker(config)
            if worker is not None:
                self.workers[config.name] = worker
        for stale in previous.values():
            self._closing.append(asyncio.create_task(stale.close(STOP_TIMEOUT)))

    def _worker(self, config: SinkConfig) -> SinkWorker | None:
        assert self._session is not None
        sink: Sink
        if config.type == "webhook":
            sink = WebhookSink(config, self._session)
        elif config.type == "sentry":
            if not config.dsn:
                log.warning("sink_disabled", sink=config.name, why="empty Sentry DSN")
                return None
            sink = SentrySink(config, on_lost=self._on_result)
        else:
            sink = EmailSink(config)
        worker = SinkWorker(
            sink,
            config=config,
            queue_size=config.queue_size,
            batch_size=self.compiled.config.delivery.batch_size,
            retries=config.retries,
            backoff=config.backoff,
            timeout=config.timeout,
            on_result=self._on_result,
        )
        worker.start()
        return worker

    def _on_result(self, sink: str, result: str) -> None:
        self.metrics.error_sink_deliveries.labels(sink, result).inc()
