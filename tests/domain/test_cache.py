"""domain/cache.py: single flight, invalidation during a load, stale-on-error, errors to every waiter."""

from __future__ import annotations

import asyncio

import pytest

from domain.cache import ReadThroughCache


async def test_a_herd_on_a_cold_key_makes_one_load():
    cache: ReadThroughCache[int] = ReadThroughCache(60)
    release = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    herd = [asyncio.create_task(cache.get("k", load)) for _ in range(200)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*herd) == [42] * 200
    assert calls == 1 and cache.loads == 1
    assert await cache.get("k", load) == 42 and calls == 1  # fresh: no load


async def test_a_load_running_when_the_key_is_invalidated_is_not_kept():
    cache: ReadThroughCache[str] = ReadThroughCache(60)
    release = asyncio.Event()
    values = iter(["old", "new"])

    async def load() -> str:
        value = next(values)
        if value == "old":
            await release.wait()
        return value

    first = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0)
    cache.invalidate("k")  # e.g. an organizer changed the questions while the old ones loaded
    release.set()
    assert await first == "old"  # its callers get the answer they waited for ...
    assert await cache.get("k", load) == "new"  # ... but the next caller loads again


async def test_errors_reach_every_waiter_and_stale_values_are_served_when_asked():
    strict: ReadThroughCache[int] = ReadThroughCache(60)
    gate = asyncio.Event()

    async def boom() -> int:
        await gate.wait()
        raise ConnectionError("database down")

    waiters = [asyncio.create_task(strict.get("k", boom)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)

    lenient: ReadThroughCache[int] = ReadThroughCache(0, stale_on_error=True)  # every get reloads

    async def one() -> int:
        return 1

    assert await lenient.get("k", one) == 1
    assert await lenient.get("k", boom) == 1  # the last value, not the error
    with pytest.raises(ConnectionError):
        await lenient.get("never-loaded", boom)


async def test_bounded():
    cache: ReadThroughCache[int] = ReadThroughCache(60, max_entries=3)
    for i in range(5):
        async def load(i: int = i) -> int:
            return i
        await cache.get(i, load)
    calls = []

    async def again() -> int:
        calls.append(1)
        return -1

    assert await cache.get(0, again) == -1 and calls  # the oldest went first
    assert await cache.get(4, again) == 4
