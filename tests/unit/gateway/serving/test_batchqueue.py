"""BatchQueue: batches form when the model is free and grow with the backlog; a lone call
waits at most the timeout; errors and cancellations stay with their callers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.serving.batchqueue import BatchQueue


class SlowModel:
    """Doubles its inputs; each call takes `call_s` and is recorded."""

    def __init__(self, call_s: float = 0.0) -> None:
        self.call_s = call_s
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.call_s)
        if -1 in items:
            raise ValueError("bad batch")
        return [2 * i for i in items]


def test_batches_grow_with_the_backlog_while_the_model_is_busy() -> None:
    model = SlowModel(call_s=0.05)

    async def main() -> list[int]:
        queue = BatchQueue(model, max_size=64, wait_s=0.0)
        first = asyncio.ensure_future(queue.submit(0))
        await asyncio.sleep(0.01)  # the first call is running alone
        rest = [asyncio.ensure_future(queue.submit(i)) for i in range(1, 40)]
        return [await first, *[await r for r in rest]]

    results = asyncio.run(main())
    assert results == [2 * i for i in range(40)]
    # no wait configured, yet everything that queued during the first call went as one
    assert [len(b) for b in model.batches] == [1, 39]


def test_max_size_bounds_a_batch() -> None:
    model = SlowModel(call_s=0.02)

    async def main() -> None:
        queue = BatchQueue(model, max_size=8, wait_s=0.0)
        await asyncio.gather(*(queue.submit(i) for i in range(20)))

    asyncio.run(main())
    assert max(len(b) for b in model.batches) == 8
    assert sorted(i for b in model.batches for i in b) == list(range(20))


def test_a_lone_call_waits_at_most_the_timeout_for_company() -> None:
    model = SlowModel()

    async def main() -> float:
        queue = BatchQueue(model, max_size=4, wait_s=0.05)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await queue.submit(1)
        alone = loop.time() - start
        # company within the timeout joins the same call
        a = asyncio.ensure_future(queue.submit(2))
        await asyncio.sleep(0.01)
        await asyncio.gather(a, queue.submit(3))
        return alone

    alone = asyncio.run(main())
    assert 0.04 <= alone < 1.0
    assert model.batches == [[1], [2, 3]]


def test_a_full_batch_does_not_wait_for_the_timeout() -> None:
    model = SlowModel()

    async def main() -> float:
        queue = BatchQueue(model, max_size=3, wait_s=5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(queue.submit(i) for i in range(3)))
        return loop.time() - start

    assert asyncio.run(main()) < 1.0


def test_an_error_reaches_that_batch_only_and_the_queue_goes_on() -> None:
    model = SlowModel()

    async def main() -> int:
        queue = BatchQueue(model, max_size=2, wait_s=0.0)
        with pytest.raises(ValueError, match="bad batch"):
            await queue.submit(-1)
        return await queue.submit(5)

    assert asyncio.run(main()) == 10


def test_a_cancelled_caller_is_dropped_from_its_batch() -> None:
    model = SlowModel(call_s=0.05)

    async def main() -> list[int]:
        queue = BatchQueue(model, max_size=8, wait_s=0.0)
        busy = asyncio.ensure_future(queue.submit(0))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(queue.submit(1))
        kept = asyncio.ensure_future(queue.submit(2))
        await asyncio.sleep(0)
        gone.cancel()
        return [await busy, await kept]

    assert asyncio.run(main()) == [0, 4]
    assert model.batches == [[0], [2]]


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        BatchQueue(SlowModel(), max_size=0, wait_s=0.0)
