"""The upstream call, made resilient: bulkhead -> (per try) breaker -> timeout, with retries.

The breaker sits inside the retry loop, as Resilience4j advises (Retry(CircuitBreaker(call))):
each try is one outcome in its window, half-open lets exactly `half_open_calls` tries reach the
upstream, and a breaker that opens mid-request stops the retries.
Retries happen only before anything was sent back to the client: the function returns the
response whose body the proxy then streams, so a response that started flowing is never retried.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Final

from multidict import CIMultiDictProxy

from gateway.errors import (
    BulkheadFull,
    Rejection,
    RetryBudgetExhausted,
    UpstreamConnectError,
    UpstreamTimeout,
    caused_by,
)
from gateway.observability.logs import get_logger
from gateway.observability.metrics import GatewayMetrics
from gateway.resilience.compile import RouteResilience
from gateway.resilience.retry import RetryPolicy
from gateway.runtime import RouteRuntime
from gateway.server.request import ProxyRequest
from gateway.state import BODY, BYTES_IN, RETRIES
from gateway.upstream.client import UpstreamResponse
from gateway.upstream.headers import Fields, set_field

log: Final = get_logger("gateway.resilience")

Body = bytes | AsyncIterable[bytes] | None


async def send_upstream(
    request: ProxyRequest,
    route: RouteRuntime,
    url: str,
    fields: Fields,
    body: Body,
) -> UpstreamResponse:
    """Send the request as the route's resilience policy says; raise a Rejection if it fails."""
    state = request.state
    resilience = route.resilience
    if resilience is None:
        return await state.upstream.send(request.method, url, fields, body, route.upstream.timeouts)
    metrics = state.metrics
    bulkhead = resilience.bulkhead
    if bulkhead is None:
        return await _tries(request, route, resilience, metrics, url, fields, body)
    if not await bulkhead.acquire():
        metrics.bulkhead_rejections.labels(route.name).inc()
        metrics.upstream_calls.labels(route.name, BulkheadFull.reason).inc()
        raise BulkheadFull(f"More than {bulkhead.limit} requests in flight on this route")
    gauge = metrics.bulkhead_in_flight.labels(route.name)
    gauge.set(bulkhead.in_flight)

    def give_back() -> None:
        bulkhead.release()
        gauge.set(bulkhead.in_flight)

    try:
        response = await _tries(request, route, resilience, metrics, url, fields, body)
    except BaseException:
        give_back()
        raise
    # The place is held until the response body has been streamed back.
    return _HeldResponse(response, give_back)


async def _tries(
    request: ProxyRequest,
    route: RouteRuntime,
    res: RouteResilience,
    metrics: GatewayMetrics,
    url: str,
    fields: Fields,
    body: Body,
) -> UpstreamResponse:
    client = request.state.upstream
    loop = request.connection.loop  # asyncio.get_running_loop() is a getpid() syscall
    deadline = None if res.total is None else loop.time() + res.total
    retry = res.retry if res.retry is not None and res.retry.allows_method(request.method) else None
    if retry is not None and body is not None and not isinstance(body, bytes):
        buffered = await _buffer(request, fields, retry.buffer_body)
        if buffered is None:
            retry = None  # too large or unsized to send twice: one try only
        else:
            body = buffered
    if retry is not None and res.budget is not None:
        res.budget.record_request()
    breaker = res.breaker
    attempt = 0
    last: UpstreamResponse | None = None
    while True:
        attempt += 1
        request[RETRIES] = attempt - 1  # error events report how many retries a failure had
        permit = None
        if breaker is not None:
            permit = breaker.acquire()
            if permit is None:
                metrics.breaker_rejections.labels(breaker.name, res.breaker_mode).inc()
                if res.breaker_mode == "enforce":
                    if last is not None:  # opened during our retries: the last answer stands
                        metrics.upstream_retries_denied.labels(route.name, "circuit_open").inc()
                        return last
                    metrics.upstream_calls.labels(route.name, "circuit_open").inc()
                    raise _open_error(res, breaker.retry_after())
        limit = res.per_try
        if deadline is not None:
            left = deadline - loop.time()
            limit = left if limit is None else min(limit, left)
        response: UpstreamResponse | None = None
        error: Rejection | None = None
        try:
            # The per-try limit rides on the client's own timers (an asyncio.timeout per try
            # costs more than the rest of this loop).
            response = await client.send(
                request.method,
                url,
                fields,
                body,
                route.upstream.timeouts,
                None if limit is None else loop.time() + limit,
            )
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            error = exc
        except BaseException:
            if breaker is not None and permit is not None:
                breaker.release(permit)
            if last is not None:
                last.release()
            raise
        if response is not None:
            outcome: int | str = response.status
        else:
            outcome = "timeout" if isinstance(error, UpstreamTimeout) else "connect_error"
        failed = outcome in res.failure_on
        if breaker is not None and permit is not None:
            breaker.record(permit, failure=failed)
        bad = failed or (isinstance(outcome, int) and outcome >= 500)
        metrics.upstream_calls.labels(route.name, _outcome_label(outcome, bad)).inc()
        if last is not None:
            last.release()
        last = None

        denied = _why_not_retry(res, retry, attempt, outcome, response, deadline, loop.time())
        if isinstance(denied, str):
            if denied:
                metrics.upstream_retries_denied.labels(route.name, denied).inc()
                log.info("retry_denied", route=route.name, reason=denied, outcome=str(outcome))
            if response is not None:
                return response
            assert error is not None
            if denied == RetryBudgetExhausted.reason:
                raise caused_by(
                    RetryBudgetExhausted(
                        f"{error.detail}; no retry left in the route's budget",
                        extensions={"upstream_error": error.reason},
                    ),
                    error,
                )
            raise error
        metrics.upstream_retries.labels(route.name, str(outcome)).inc()
        log.info("retry", route=route.name, attempt=attempt + 1, outcome=str(outcome))
        last = response
        try:
            await asyncio.sleep(denied)
        except BaseException:
            if last is not None:
                last.release()
            raise


def _why_not_retry(
    res: RouteResilience,
    retry: RetryPolicy | None,
    attempt: int,
    outcome: int | str,
    response: UpstreamResponse | None,
    deadline: float | None,
    now: float,
) -> float | str:
    """The delay before the next try, or why there is none ('' when none was wanted)."""
    if retry is None or attempt >= retry.attempts or not retry.triggered_by(outcome):
        return ""
    status = response.status if response is not None else None
    retry_after = response.headers.get("Retry-After") if response is not None else None
    delay = retry.delay(attempt, status, retry_after)
    if delay is None:
        return "retry_after_too_long"
    if deadline is not None and now + delay >= deadline:
        return "deadline"
    if res.budget is not None and not res.budget.try_spend():
        return RetryBudgetExhausted.reason
    return delay


def _outcome_label(outcome: int | str, failed: bool) -> str:
    if outcome == "timeout":
        return UpstreamTimeout.reason
    if outcome == "connect_error":
        return UpstreamConnectError.reason
    return "failure_status" if failed else "success"


def _open_error(res: RouteResilience, retry_after: float) -> Rejection:
    headers = {}
    if res.fallback_retry_after:
        # Whole seconds (RFC 9110), rounded up so a client never comes back too early.
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return res.fallback(
        "The upstream is failing; the gateway stops sending it requests for a while",
        headers=headers,
    )


async def _buffer(request: ProxyRequest, fields: Fields, limit: int) -> bytes | None:
    """Read a small sized body whole so that a retry can send it again; None if it is not."""
    length = request.content_length
    if length is None or length > limit or request.chunked:
        return None
    data = await request.read()
    request[BODY] = data
    request[BYTES_IN] = len(data)
    set_field(fields, "Content-Length", str(len(data)))
    return data


class _HeldResponse:
    """An upstream response that gives its bulkhead place back when it is released."""

    __slots__ = ("_inner", "_on_release", "fields", "reason", "status")

    def __init__(self, inner: UpstreamResponse, on_release: Callable[[], None]) -> None:
        self._inner = inner
        self._on_release: Callable[[], None] | None = on_release
        self.status: int = inner.status
        self.reason: str | None = inner.reason
        self.fields = inner.fields

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._inner.headers

    def body(self) -> AsyncIterator[bytes]:
        return self._inner.body()

    def arrived_body(self) -> bytes | None:
        return self._inner.arrived_body()

    def release(self) -> None:
        self._inner.release()
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release()
