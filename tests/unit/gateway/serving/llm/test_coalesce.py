"""Coalescing a stream's backlog (`gateway.serving.llm.coalesce`), and the slot's `stream`
built on it: a backlog goes as one batch, no chunk ever waits for company, the model runs at
most a bound ahead, a failure comes after the chunks before it, and a reader that goes away
stops the model."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import asdict
from typing import Any, TypeVar, cast

import pytest
from ray import cloudpickle

from core.errors import InputError
from gateway.serving.llm.coalesce import chunk_dict, coalesce
from gateway.serving.llm.generation import GenerationChunk, GenerationRequest
from gateway.serving.llm.openai_parse import parse_completion
from gateway.serving.model_server import ModelServer
from gateway.wire.replies import CallOutcome, SlotError, StreamChunks, StreamStart
from model_registry.refs import ModelRef

T = TypeVar("T")
QUICK = 1.0  # generous: only a stuck test ever waits this long


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), 10)
    return asyncio.run(bounded())


class Source:
    """An async generator the test drives: `release(n)` lets n more items out; remembers
    how many it produced and whether it was closed (the model stopped)."""

    def __init__(self, items: int | None = None, fail_after: int | None = None) -> None:
        self.items, self.fail_after = items, fail_after
        self.produced = 0
        self.closed = False
        self._allowed = 0
        self._changed = asyncio.Event()

    def release(self, n: int = 1) -> None:
        self._allowed += n
        self._changed.set()

    async def run(self) -> AsyncGenerator[int, None]:
        try:
            while self.items is None or self.produced < self.items:
                while self._allowed <= self.produced:
                    self._changed.clear()
                    await self._changed.wait()
                if self.fail_after is not None and self.produced == self.fail_after:
                    raise RuntimeError("model failed")
                self.produced += 1
                yield self.produced
        finally:
            self.closed = True


async def settle() -> None:
    """Let every ready task run (the pump reads as far as it may)."""
    for _ in range(20):
        await asyncio.sleep(0)


# ---- coalesce --------------------------------------------------------------------------

def test_a_backlog_goes_as_one_batch_in_order() -> None:
    async def scenario() -> list[tuple[int, ...]]:
        src = Source(items=7)
        async with aclosing(coalesce(src.run(), limit=16)) as batches:
            src.release(3)
            await settle()
            first = await anext(batches)
            src.release(4)
            await settle()
            return [first] + [b async for b in batches]

    assert run(scenario) == [(1, 2, 3), (4, 5, 6, 7)]


def test_without_a_backlog_each_item_goes_alone_at_once() -> None:
    async def scenario() -> list[tuple[int, ...]]:
        src = Source(items=3)
        got = []
        async with aclosing(coalesce(src.run())) as batches:
            for _ in range(3):
                src.release(1)
                got.append(await asyncio.wait_for(anext(batches), QUICK))
        return got

    assert run(scenario) == [(1,), (2,), (3,)]


def test_the_first_item_is_never_held_for_company() -> None:
    async def scenario() -> tuple[int, ...]:
        src = Source()  # endless: nothing more comes until released
        async with aclosing(coalesce(src.run())) as batches:
            src.release(1)
            return await asyncio.wait_for(anext(batches), QUICK)

    assert run(scenario) == (1,)


def test_the_source_runs_at_most_the_bound_ahead_of_a_slow_reader() -> None:
    async def scenario() -> tuple[int, tuple[int, ...], int]:
        src = Source()
        async with aclosing(coalesce(src.run(), limit=4)) as batches:
            src.release(1)
            assert await anext(batches) == (1,)  # the pump starts with the first read
            src.release(100)
            await settle()
            ahead = src.produced - 1  # the reader has 1
            batch = await anext(batches)
            await settle()
            return ahead, batch, src.produced - 1 - len(batch)

    ahead, batch, ahead_after = run(scenario)
    assert ahead == 4 + 1  # the queue, and the one the pump holds while it is full
    assert batch == (2, 3, 4, 5)  # a batch is at most the queue
    assert ahead_after == 4 + 1


def test_closing_the_reader_cancels_the_pump_and_closes_the_source() -> None:
    async def scenario() -> tuple[bool, bool]:
        src = Source()
        batches = coalesce(src.run(), limit=2)
        src.release(1)
        assert await anext(batches) == (1,)
        waiting = asyncio.ensure_future(anext(batches))  # the pump waits on the model
        await settle()
        waiting.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await batches.aclose()
        return src.closed, waiting.cancelled()

    assert run(scenario) == (True, True)


def test_closing_the_reader_while_the_pump_waits_on_a_full_queue_closes_the_source() -> None:
    async def scenario() -> tuple[bool, int]:
        src = Source()
        batches = coalesce(src.run(), limit=2)
        src.release(1)
        assert await anext(batches) == (1,)
        src.release(50)
        await settle()  # the pump is blocked on the full queue, the source at its yield
        await batches.aclose()
        return src.closed, src.produced

    closed, produced = run(scenario)
    assert closed and produced == 1 + 2 + 1


def test_a_failure_is_raised_after_the_items_before_it() -> None:
    async def scenario() -> tuple[list[tuple[int, ...]], str, bool]:
        src = Source(fail_after=3)
        got: list[tuple[int, ...]] = []
        async with aclosing(coalesce(src.run())) as batches:
            src.release(10)
            await settle()
            with pytest.raises(RuntimeError) as err:
                async for batch in batches:
                    got.append(batch)
        return got, str(err.value), src.closed

    assert run(scenario) == ([(1, 2, 3)], "model failed", True)


def test_a_failure_with_nothing_before_it_is_raised_at_once() -> None:
    async def scenario() -> None:
        src = Source(fail_after=0)
        src.release(1)
        async with aclosing(coalesce(src.run())) as batches:
            await anext(batches)

    with pytest.raises(RuntimeError, match="model failed"):
        run(scenario)


def test_a_limit_below_one_is_refused() -> None:
    async def scenario() -> None:
        async with aclosing(coalesce(Source().run(), limit=0)) as batches:
            await anext(batches)

    with pytest.raises(ValueError, match="at least 1"):
        run(scenario)


@pytest.mark.parametrize("chunk", [GenerationChunk("he", None, 1),
                                   GenerationChunk("", "stop", 0, prompt_tokens=5)])
def test_chunk_dict_is_asdict(chunk: GenerationChunk) -> None:
    assert chunk_dict(chunk) == asdict(chunk)


# ---- the slot's stream -------------------------------------------------------------------

class TextGen:
    """A text generator whose stream the test drives through a `Source` of token numbers."""

    def __init__(self, src: Source, refuse: bool = False, fail_first: bool = False) -> None:
        self.src, self.refuse, self.fail_first = src, refuse, fail_first

    async def stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if self.refuse:
            raise InputError("max_tokens: too many", field="max_tokens")
        if self.fail_first:
            raise RuntimeError("no first token")
        async with aclosing(self.src.run()) as numbers:  # closed with this stream
            async for n in numbers:
                done = self.src.items is not None and n == self.src.items
                yield GenerationChunk(f"t{n}", "stop" if done else None, 1)


def slot_stream(gen: TextGen) -> AsyncGenerator[Any, None]:
    """`ModelServer.stream` (an async generator), on a slot without its Serve constructor."""
    server = object.__new__(ModelServer)
    server._textgen, server._ref = gen, ModelRef("m", "3", "src")
    return cast(AsyncGenerator[Any, None], server.stream(REQUEST))


REQUEST = parse_completion({"prompt": "hi", "max_tokens": 8, "stream": True}, 64)


def _text(item: Any) -> list[str]:
    return [c["text"] for c in item.chunks]


def test_slot_stream_sends_the_first_chunk_alone_then_batches_the_backlog() -> None:
    async def scenario() -> list[Any]:
        src = Source(items=6)
        items = []
        async with aclosing(slot_stream(TextGen(src))) as stream:
            src.release(1)
            items.append(await asyncio.wait_for(anext(stream), QUICK))
            src.release(1)
            items.append(await asyncio.wait_for(anext(stream), QUICK))
            src.release(4)
            await settle()
            items += [i async for i in stream]
        return items

    start, alone, backlog = run(scenario)
    assert isinstance(start, StreamStart) and start.model.version == "3"
    assert start.chunk == {"text": "t1", "finish_reason": None, "tokens": 1,
                           "prompt_tokens": None}
    assert isinstance(alone, StreamChunks) and _text(alone) == ["t2"]
    assert isinstance(backlog, StreamChunks) and _text(backlog) == ["t3", "t4", "t5", "t6"]
    assert backlog.chunks[-1]["finish_reason"] == "stop"


def test_slot_stream_client_error_is_the_only_item() -> None:
    async def scenario() -> list[Any]:
        return [i async for i in slot_stream(TextGen(Source(), refuse=True))]

    [only] = run(scenario)
    assert isinstance(only, SlotError) and only.kind is CallOutcome.CLIENT_ERROR
    assert (only.status, only.message, only.field) == (422, "max_tokens: too many",
                                                       "max_tokens")


def test_slot_stream_failure_before_the_first_token_raises_to_the_caller() -> None:
    async def scenario() -> Any:
        return await anext(slot_stream(TextGen(Source(), fail_first=True)))

    with pytest.raises(RuntimeError, match="no first token"):
        run(scenario)


def test_slot_stream_failure_mid_stream_raises_after_the_chunks_before_it() -> None:
    async def scenario() -> tuple[list[Any], bool]:
        src = Source(fail_after=3)
        items: list[Any] = []
        src.release(10)
        with pytest.raises(RuntimeError, match="model failed"):
            async for item in slot_stream(TextGen(src)):
                items.append(item)
        return items, src.closed

    items, closed = run(scenario)
    assert isinstance(items[0], StreamStart) and items[0].chunk["text"] == "t1"
    assert [t for i in items[1:] for t in _text(i)] == ["t2", "t3"]
    assert closed


@pytest.mark.parametrize("after_items", [1, 2])
def test_slot_stream_closed_by_its_reader_stops_the_model(after_items: int) -> None:
    """Closed at the first item (before coalescing began) or later (Serve closes the
    generator when the client disconnects)."""
    async def scenario() -> bool:
        src = Source()
        stream = slot_stream(TextGen(src))
        for _ in range(after_items):
            src.release(1)
            await anext(stream)
        await stream.aclose()
        return src.closed

    assert run(scenario)


def test_slot_stream_cancelled_while_waiting_stops_the_model() -> None:
    async def scenario() -> bool:
        src = Source()
        stream = slot_stream(TextGen(src))
        src.release(1)
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        await settle()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return src.closed

    assert run(scenario)


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "ray"])
def test_stream_chunks_cross_the_ray_hop_intact_and_frozen(dumps: Any) -> None:
    item = StreamChunks(({"text": "a", "finish_reason": None, "tokens": 1,
                          "prompt_tokens": None},))
    back = pickle.loads(dumps(item))
    assert back == item and type(back) is StreamChunks
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.chunks = ()  # type: ignore[misc]
