"""FlushTimer: regular flushes, urgent ones soon after a failure, and a least gap."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.serving.flushtimer import FlushTimer


async def _elapsed(timer: FlushTimer) -> float:
    start = time.monotonic()
    await timer.next_flush()
    return time.monotonic() - start


def test_regular_flush_after_the_interval() -> None:
    took = asyncio.run(_elapsed(FlushTimer(0.3, 0.05)))
    assert 0.28 <= took < 0.6


def test_urge_flushes_after_the_urgent_delay() -> None:
    async def main() -> float:
        timer = FlushTimer(5.0, 0.05)
        start = time.monotonic()
        waiting = asyncio.ensure_future(timer.next_flush())
        await asyncio.sleep(0.1)
        timer.urge()
        await waiting
        return time.monotonic() - start

    took = asyncio.run(main())
    assert 0.14 <= took < 1.0  # 0.1 s before the urge + 0.05 s; far below the 5 s interval


def test_urges_during_the_gap_are_one_flush_and_the_gap_holds() -> None:
    async def main() -> list[float]:
        timer = FlushTimer(5.0, 0.1)
        timer.urge()
        took = [await _elapsed(timer)]
        # A burst of failures while the flush was being prepared has been absorbed by it:
        # the next flush waits for the next urge, and still comes no sooner than the gap.
        timer.urge()
        took.append(await _elapsed(timer))
        return took

    first, second = asyncio.run(main())
    assert 0.09 <= first < 1.0
    assert 0.09 <= second < 1.0


def test_an_urge_is_not_lost_while_waiting_out_the_gap() -> None:
    async def main() -> float:
        timer = FlushTimer(5.0, 0.1)
        timer.urge()
        waiting = asyncio.ensure_future(timer.next_flush())
        await asyncio.sleep(0.05)
        timer.urge()  # inside the gap of this flush: it travels with it
        await waiting
        return await _elapsed(timer)

    # The second urge came before the first flush went out, so it is not a new one:
    # the following flush is the regular one (5 s), cut here by a timeout.
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(main(), 0.5))


@pytest.mark.parametrize("interval, urgent", [(0.0, 0.05), (1.0, 0.0), (-1.0, 0.1)])
def test_bad_settings_are_refused(interval: float, urgent: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        FlushTimer(interval, urgent)
