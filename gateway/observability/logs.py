"""Structured JSON logging via structlog; the request id is bound per request (contextvars)."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

from gateway.observability.request_log import LOGGED_REQUEST_ID

Logger = Any
"""structlog's bound logger; typed loosely because its methods are built at runtime."""

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _CurrentStdout:
    """Writes to whatever sys.stdout is when a line is written, not when logging was set up:
    test runners swap stdout, and a stream captured early may be closed by the time we log."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    rid = LOGGED_REQUEST_ID.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log line, ours and the stdlib's, as one JSON object per line."""
    out = stream or cast(TextIO, _CurrentStdout())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, asyncio) log through the stdlib: render those as JSON too.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.INFO))
    # aiohttp's own access log would duplicate ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str) -> Logger:
    return structlog.get_logger(name)
