"""Gathers concurrent calls into batches that run one at a time (a slot's dynamic batching).

Why not Serve's `@serve.batch`: it forms a batch every `batch_wait_timeout_s` whether or not
the model is free, and the batches then queue for the model one behind the other. With a
model slower than the timeout, every batch is as small as the arrivals of one timeout, and
batching buys nothing exactly when the model is the bottleneck (measured: 1-3 requests a
batch with 64 callers waiting). Here the next batch is formed when the model is free, from
everything that waited meanwhile (up to `max_size`), so batches grow with the backlog; the
timeout only holds a lone request back (measured from its arrival) while the model is idle,
to let company arrive.

A cancelled caller (client gone, timeout) is dropped from the batch it was waiting for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchQueue(Generic[T, R]):
    """`await submit(item)` -> its result; `run` takes a batch and returns one result per
    item, in order. One batch runs at a time, on the event loop of the first caller."""

    def __init__(self, run: Callable[[list[T]], Awaitable[list[R]]], max_size: int,
                 wait_s: float) -> None:
        if max_size < 1:
            raise ValueError(f"max_size: must be >= 1, got {max_size}")
        self._run = run
        self.max_size = max_size
        self.wait_s = max(0.0, wait_s)
        self._waiting: collections.deque[tuple[T, asyncio.Future[R], float]] = \
            collections.deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._arrived is None:
            self._arrived = asyncio.Event()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future, loop.time()))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await future

    def waiting(self) -> int:
        return len(self._waiting)

    async def _work(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            # A lone request waits (from its arrival) for company while the model is idle;
            # after a batch, whoever queued meanwhile has already waited and goes at once.
            deadline = self._waiting[0][2] + self.wait_s
            while len(self._waiting) < self.max_size and loop.time() < deadline:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), deadline - loop.time())
            self._drop_cancelled()
            batch = [self._waiting.popleft()
                     for _ in range(min(self.max_size, len(self._waiting)))]
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[T, asyncio.Future[R], float]]) -> None:
        try:
            results = await self._run([item for item, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} returned {len(results)} results")
        except Exception as exc:  # the batch's callers get the error, the queue goes on
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _drop_cancelled(self) -> None:
        if any(f.done() for _, f, _ in self._waiting):
            self._waiting = collections.deque(w for w in self._waiting if not w[1].done())
