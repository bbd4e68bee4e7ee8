"""Where events and alert notices go: one small interface, one module per kind of sink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.capture.alerts import AlertNotice
from gateway.capture.events import ErrorEvent

Item = ErrorEvent | AlertNotice
"""What a sink delivers: an error event or an alert's firing or recovery."""


class SinkError(Exception):
    """A delivery that failed; the worker retries it, then counts it as failed."""


class Sink(Protocol):
    name: str

    async def send(self, batch: Sequence[Item]) -> None:
        """Deliver the batch or raise (SinkError or any transport error)."""
        ...

    async def close(self) -> None: ...


def summary_lines(batch: Sequence[Item]) -> list[str]:
    """One human line per item, for chat messages and mail bodies."""
    lines = []
    for item in batch:
        if isinstance(item, AlertNotice):
            lines.append(item.summary)
        else:
            lines.append(
                f"[{item.severity.upper()}] {item.title} (reason {item.reason}, "
                f"seen {item.group_count}x, request {item.request_id})"
            )
    return lines
