"""The algorithms, on every store, with a clock the tests move: no test sleeps."""

from __future__ import annotations

import pytest

from gateway.ratelimit.strategies import (
    Calendar,
    Fixed,
    FixedWindow,
    SlidingWindow,
    Strategy,
    TokenBucket,
)
from gateway.stores.base import LimitStore
from tests.ratelimit.conftest import FakeClock

KEY = "rl:{test|k}"


async def admitted(strategy: Strategy, store: LimitStore, now: float, n: int, cost: int = 1) -> int:
    count = 0
    for _ in range(n):
        if (await strategy.hit(store, KEY, cost, now)).allowed:
            count += 1
    return count


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(FixedWindow(5, Fixed(60)), id="fixed_window"),
        pytest.param(SlidingWindow(5, 60), id="sliding_window"),
        pytest.param(TokenBucket(5, 60), id="token_bucket"),
    ],
)
async def test_admits_the_limit_then_refuses(
    strategy: Strategy, store: LimitStore, clock: FakeClock
) -> None:
    """Exactly `limit` requests pass at once; the next is refused with a positive wait."""
    assert await admitted(strategy, store, clock.now, 8) == 5
    refused = await strategy.hit(store, KEY, 1, clock.now)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after > 0


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param(FixedWindow(5, Fixed(60)), id="fixed_window"),
        pytest.param(SlidingWindow(5, 60), id="sliding_window"),
        pytest.param(TokenBucket(5, 60), id="token_bucket"),
    ],
)
async def test_retry_after_is_when_a_retry_passes(
    strategy: Strategy, store: LimitStore, clock: FakeClock
) -> None:
    """A client waiting Retry-After gets through; one retrying a moment earlier does not."""
    clock.now = 1_700_000_010.0
    await admitted(strategy, store, clock.now, 5)
    wait = (await strategy.hit(store, KEY, 1, clock.now)).retry_after
    assert not (await strategy.hit(store, KEY, 1, clock.now + wait - 0.01)).allowed
    assert (await strategy.hit(store, KEY, 1, clock.now + wait + 0.001)).allowed


async def test_fixed_window_starts_afresh_each_window(store: LimitStore, clock: FakeClock) -> None:
    """A fixed window forgets the previous window's requests entirely."""
    strategy = FixedWindow(3, Fixed(60))
    clock.now = 1_700_000_090.0  # windows of 60 s start at multiples of 60: ...040, ...100
    assert await admitted(strategy, store, clock.now, 5) == 3
    assert await admitted(strategy, store, clock.now + 20, 5) == 3  # the next window


async def test_sliding_window_weighs_the_previous_window(
    store: LimitStore, clock: FakeClock
) -> None:
    """Just after a window boundary, the previous window still counts almost fully."""
    strategy = SlidingWindow(10, 60)
    boundary = 1_700_000_040.0  # a multiple of 60
    assert await admitted(strategy, store, boundary - 20, 10) == 10
    # 15 s into the next window the previous one weighs 0.75: 7.5 used, 2 more fit.
    assert await admitted(strategy, store, boundary + 15, 5) == 2
    # Halfway (weight 0.5): 5 + 2 used, 3 more fit.
    assert await admitted(strategy, store, boundary + 30, 5) == 3


async def test_token_bucket_allows_a_burst_then_the_rate(
    store: LimitStore, clock: FakeClock
) -> None:
    """A bucket of 10 at 1 per second: 10 at once, then one more each second."""
    strategy = TokenBucket(60, 60, burst=10)
    assert await admitted(strategy, store, clock.now, 15) == 10
    assert await admitted(strategy, store, clock.now + 1.0, 3) == 1
    assert await admitted(strategy, store, clock.now + 4.0, 5) == 3


async def test_cost_takes_several_units(store: LimitStore, clock: FakeClock) -> None:
    """A request of cost 4 against a limit of 10 leaves room for two such requests only."""
    strategy = FixedWindow(10, Fixed(60))
    clock.now = 1_700_000_000.0
    assert await admitted(strategy, store, clock.now, 5, cost=4) == 2
    decision = await strategy.hit(store, KEY, 2, clock.now)
    assert decision.allowed and decision.remaining == 0


async def test_a_refused_request_takes_nothing(store: LimitStore, clock: FakeClock) -> None:
    """Requests refused do not push the client further back."""
    strategy = SlidingWindow(3, 60)
    clock.now = 1_700_000_000.0
    await admitted(strategy, store, clock.now, 50)
    usage = await strategy.hit(store, KEY, 0, clock.now)
    assert usage.remaining == 0
    assert (await strategy.hit(store, KEY, 1, clock.now + 60)).remaining == 0
    assert not (await strategy.hit(store, KEY, 1, clock.now + 60)).allowed


async def test_reading_usage_takes_nothing(store: LimitStore, clock: FakeClock) -> None:
    """A cost-0 read reports the remaining quota and leaves it whole."""
    strategy = TokenBucket(5, 60)
    await admitted(strategy, store, clock.now, 2)
    for _ in range(3):
        assert (await strategy.hit(store, KEY, 0, clock.now)).remaining == 3


async def test_calendar_day_resets_at_local_midnight(store: LimitStore) -> None:
    """A daily quota in Europe/Paris resets at Paris midnight, not at UTC midnight."""
    from zoneinfo import ZoneInfo

    strategy = FixedWindow(2, Calendar("day", ZoneInfo("Europe/Paris")))
    before_midnight = 1_700_002_740.0  # 2023-11-14 22:59 UTC = 23:59 in Paris
    assert await admitted(strategy, store, before_midnight, 3) == 2
    decision = await strategy.hit(store, KEY, 1, before_midnight)
    assert decision.retry_after == pytest.approx(60.0)
    assert await admitted(strategy, store, before_midnight + 61, 3) == 2


async def test_calendar_month_spans_the_month() -> None:
    """A monthly quota runs from the 1st to the 1st of the next month in its time zone."""
    from zoneinfo import ZoneInfo

    _, start, end = Calendar("month", ZoneInfo("UTC")).bounds(1_700_002_740.0)
    assert (start, end) == (1_698_796_800.0, 1_701_388_800.0)  # Nov 1st, Dec 1st 2023


async def test_reset_forgets_a_rule_s_keys(store: LimitStore, clock: FakeClock) -> None:
    """After a reset the client has its whole quota again; other rules keep theirs."""
    strategy = FixedWindow(2, Fixed(60))
    await admitted(strategy, store, clock.now, 2)
    await strategy.hit(store, "rl:{other|k}", 1, clock.now)
    assert await store.reset("rl:{test|") == 1
    assert await admitted(strategy, store, clock.now, 3) == 2
    assert (await strategy.hit(store, "rl:{other|k}", 0, clock.now)).remaining == 1
