"""The bulkhead: a limit on calls in flight, with an optional bounded queue."""

from __future__ import annotations

import asyncio

from gateway.resilience.bulkhead import Bulkhead


async def test_refuses_beyond_the_limit_without_a_queue() -> None:
    """With no queue, the call past the limit is refused at once."""
    bulkhead = Bulkhead(limit=2)
    assert await bulkhead.acquire()
    assert await bulkhead.acquire()
    assert not await bulkhead.acquire()
    bulkhead.release()
    assert await bulkhead.acquire()
    assert bulkhead.in_flight == 2


async def test_queued_call_takes_over_a_released_place() -> None:
    """A queued call gets the place a finishing call gives back, in arrival order."""
    bulkhead = Bulkhead(limit=1, queue=1, max_wait=60)
    assert await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)  # let it enter the queue
    assert bulkhead.waiting == 1
    assert not await bulkhead.acquire()  # the queue is full
    bulkhead.release()
    assert await waiting
    assert bulkhead.in_flight == 1 and bulkhead.waiting == 0


async def test_queued_call_gives_up_after_max_wait() -> None:
    """A call that waited max_wait is refused and leaves the queue."""
    bulkhead = Bulkhead(limit=1, queue=1, max_wait=0.01)
    assert await bulkhead.acquire()
    assert not await bulkhead.acquire()
    assert bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    """A client that goes away while queued frees its queue place."""
    bulkhead = Bulkhead(limit=1, queue=1, max_wait=60)
    assert await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.in_flight == 0
