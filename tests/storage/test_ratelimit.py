"""storage.ratelimit against the real Redis: limits hold under concurrency, windows slide,
multi-limit checks are all-or-nothing, releases and resets work, Redis down fails closed."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from domain.errors import FoyerError
from storage.ratelimit import Limit, RateLimiter
from tests.support.nodes import free_port


@pytest.fixture
async def limiter(test_services, redis_prefix):
    client = aioredis.Redis.from_url(test_services.redis_url)
    yield RateLimiter(client)
    await client.aclose()


async def test_sliding_window_refuses_after_limit_with_retry_after(limiter, redis_prefix):
    lim = Limit(redis_prefix + "a", 3, 60)
    decisions = [await limiter.acquire(lim) for _ in range(3)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    refused = await limiter.acquire(lim)
    assert not refused.allowed and refused.refused_by == lim
    assert 59 <= refused.retry_after <= 60
    # releasing one recorded hit frees exactly one slot
    await limiter.release(decisions[0].token, lim.key)
    assert (await limiter.acquire(lim)).allowed
    assert not (await limiter.acquire(lim)).allowed
    await limiter.reset(lim.key)
    assert (await limiter.peek(lim)).remaining == 3


async def test_concurrent_acquires_never_exceed_the_limit(limiter, redis_prefix):
    lim = Limit(redis_prefix + "c", 10, 60)
    results = await asyncio.gather(*(limiter.acquire(lim) for _ in range(60)))
    assert sum(d.allowed for d in results) == 10


async def test_multiple_limits_are_all_or_nothing(limiter, redis_prefix):
    wide, narrow = Limit(redis_prefix + "wide", 5, 60), Limit(redis_prefix + "narrow", 2, 60)
    assert (await limiter.acquire(wide, narrow)).allowed
    assert (await limiter.acquire(wide, narrow)).allowed
    refused = await limiter.acquire(wide, narrow)
    assert not refused.allowed and refused.refused_by == narrow
    # the refused hit was not recorded in the wide limit either
    assert (await limiter.peek(wide)).remaining == 3


async def test_window_slides(limiter, redis_prefix):
    lim = Limit(redis_prefix + "s", 2, 0.4)
    assert (await limiter.acquire(lim)).allowed
    assert (await limiter.acquire(lim)).allowed
    refused = await limiter.acquire(lim)
    assert not refused.allowed and 0 < refused.retry_after <= 0.4
    deadline = time.monotonic() + 3
    while not (await limiter.acquire(lim)).allowed:
        assert time.monotonic() < deadline, "window never slid"
        await asyncio.sleep(0.05)


async def test_fixed_window_counter(limiter, redis_prefix):
    lim = Limit(redis_prefix + "f", 5, 30)
    results = await asyncio.gather(*(limiter.acquire_fixed(lim) for _ in range(20)))
    assert sum(d.allowed for d in results) == 5
    refused = [d for d in results if not d.allowed][0]
    assert 0 < refused.retry_after <= 30
    await limiter.reset(lim.key)
    assert (await limiter.acquire_fixed(lim)).allowed


async def test_redis_down_fails_closed():
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(FoyerError) as info:
            await RateLimiter(client).acquire(Limit("x", 1, 1))
        assert info.value.code == "unavailable"
    finally:
        await client.aclose()


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        Limit("k", 0, 10)
    with pytest.raises(ValueError):
        Limit("k", 1, 0)
