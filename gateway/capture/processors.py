"""The processor chain over an event: scrub, fingerprint, drop, group, sample.

Each processor takes an event and returns it (changed or not) or None to drop it; dropping is
explicit and the chain stops there (structlog's processor pipeline, with an explicit drop).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.capture.events import ErrorEvent, ExceptionInfo
from gateway.capture.groups import GroupStore
from gateway.capture.scrubbing import Scrubber

Processor = Callable[[ErrorEvent], ErrorEvent | None]
"""One step of the chain; its __name__ labels the metric of events it drops."""


def run_chain(
    processors: Sequence[Processor], event: ErrorEvent
) -> tuple[ErrorEvent | None, str | None]:
    """The processed event, or None and the name of the processor that dropped it."""
    for processor in processors:
        result = processor(event)
        if result is None:
            return None, processor.__name__
        event = result
    return event, None


def scrubber(scrub: Scrubber, body_limit: int) -> Processor:
    """Secrets out of headers, query, body excerpt, path, detail and exception text."""

    def scrub_event(event: ErrorEvent) -> ErrorEvent:
        body = event.body_excerpt
        if body is not None:
            body = scrub.text(body)[:body_limit]
        exception = event.exception
        if exception is not None:
            exception = ExceptionInfo(
                exception.type, scrub.text(exception.message), scrub.text(exception.stack)
            )
        return dataclasses.replace(
            event,
            path=scrub.text(event.path),
            query=scrub.query(event.query),
            headers=tuple((name, scrub.header(name, value)) for name, value in event.headers),
            body_excerpt=body,
            detail=scrub.text(event.detail) if event.detail else event.detail,
            exception=exception,
        )

    scrub_event.__name__ = "scrub"
    return scrub_event


def fingerprinter(parts: Iterable[str]) -> Processor:
    """The grouping key: a hash of the chosen parts (reason, route, status, exception type)."""
    chosen = tuple(parts)

    def fingerprint(event: ErrorEvent) -> ErrorEvent:
        values = {
            "reason": event.reason,
            "category": event.category,
            "route": event.route,
            "status": str(event.status),
            "method": event.method,
            "exception_type": event.exception.type if event.exception else "",
        }
        key = "\x1f".join(f"{part}={values[part]}" for part in chosen)
        return dataclasses.replace(event, fingerprint=hashlib.sha1(key.encode()).hexdigest()[:16])

    return fingerprint


def dropper(rules: Iterable[tuple[str | None, str | None, int | None]]) -> Processor:
    """Drops events matching every given part of any (reason, route, status) rule."""
    compiled = tuple(rules)

    def drop(event: ErrorEvent) -> ErrorEvent | None:
        for reason, route, status in compiled:
            if (
                (reason is None or reason in (event.reason, event.category))
                and (route is None or route == event.route)
                and (status is None or status == event.status)
            ):
                return None
        return event

    return drop


def grouper(groups: GroupStore) -> Processor:
    """Counts the event in its group and notes the group's count on it."""

    def group(event: ErrorEvent) -> ErrorEvent:
        found = groups.record(event)
        return dataclasses.replace(event, group_count=found.count)

    return group


def sampler(rates: Mapping[str, float], rng: random.Random | None = None) -> Processor:
    """Keeps a share of events per reason or category (`*` for the rest); counted before this."""
    table = dict(rates)
    default = table.pop("*", 1.0)
    draw = (rng or random.Random()).random

    def sample(event: ErrorEvent) -> ErrorEvent | None:
        rate = table.get(event.reason, table.get(event.category, default))
        return event if rate >= 1.0 or draw() < rate else None

    return sample
