"""Coalescing a stream's backlog: `coalesce` hands over, each time its reader asks, every
chunk that is already waiting as one batch, so a reader slower than the model (Ray's hop to
the ingress, under load) pays its per-message cost once per batch rather than per chunk. It
never waits to fill a batch: with no backlog each chunk goes alone, as soon as it exists.

`close_source` closes a stream that may not have been handed to `coalesce` yet, and
`chunk_dict` is a chunk's wire form (what `dataclasses.asdict` gives, without its deep copy).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from gateway.serving.llm.generation import GenerationChunk

T = TypeVar("T")

# How far the model may run ahead of a slow reader, in chunks.
STREAM_AHEAD = 16


@dataclass(frozen=True, slots=True)
class _Failed:
    """The source raised: what its reader gets after the chunks before it."""

    error: Exception


class _End:
    """The source is exhausted."""


_END = _End()


async def coalesce(source: AsyncIterator[T], limit: int = STREAM_AHEAD
                   ) -> AsyncGenerator[tuple[T, ...], None]:
    """Everything `source` produced since the last batch, as one tuple, in order; waits only
    when nothing is waiting. A background task reads `source` into a queue of `limit`, so the
    source is at most `limit` + 1 items ahead of the reader (the queue, and the one the task
    holds while the queue is full). An exception from `source` is raised after the batch of
    the items before it. Closing this generator (or cancelling its reader) cancels the task
    and closes `source`, so the model stops.

    Use it under `contextlib.aclosing`: `async for` alone does not close it when the loop
    body is interrupted (e.g. its own generator is closed at a `yield`)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    queue: asyncio.Queue[T | _Failed | _End] = asyncio.Queue(limit)
    pump = asyncio.create_task(_pump(source, queue))
    try:
        while True:
            # `get` returns at once when something waits: a backlog costs no loop turn.
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            last = items[-1]  # the end or a failure is always the last thing the pump puts
            if isinstance(last, _End | _Failed):
                if len(items) > 1:
                    yield tuple(cast(list[T], items[:-1]))
                if isinstance(last, _Failed):
                    raise last.error
                return
            yield tuple(cast(list[T], items))
    finally:
        await _stop(pump, source)


async def _pump(source: AsyncIterator[T], queue: asyncio.Queue[T | _Failed | _End]) -> None:
    try:
        async for item in source:
            await queue.put(item)
    except Exception as exc:  # the reader raises it, in order; cancellation is ours
        await queue.put(_Failed(exc))
        return
    await queue.put(_END)


async def _stop(pump: asyncio.Task[None], source: AsyncIterator[Any]) -> None:
    """Cancel the pump and close the source once the pump let go of it (closing a generator
    that another task is still running raises)."""
    pump.cancel()
    await asyncio.wait([pump])
    await close_source(source)


async def close_source(source: AsyncIterator[Any]) -> None:
    """Close `source` if it can be closed (an async generator); a no-op once it ended."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()


def chunk_dict(chunk: GenerationChunk) -> dict[str, Any]:
    """`dataclasses.asdict(chunk)`: its fields are plain values, so nothing needs copying."""
    return {"text": chunk.text, "finish_reason": chunk.finish_reason, "tokens": chunk.tokens,
            "prompt_tokens": chunk.prompt_tokens}
