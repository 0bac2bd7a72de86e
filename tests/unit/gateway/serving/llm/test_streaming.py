"""Stop sequences over a token stream, and stream timing (TTFT, time per output token)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.serving.llm.generation import (
    GenerationChunk,
)
from gateway.serving.llm.streaming import StopFilter, StreamTally

LIMIT = 256
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}




# ---- stop sequences and stream timing ---------------------------------------------------

def _run_filter(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    stop_filter = StopFilter(stops)
    out = "".join(stop_filter.feed(p) for p in pieces) + stop_filter.flush()
    return out, stop_filter.stopped


def test_stop_filter_holds_back_a_stop_sequence_split_across_pieces() -> None:
    stop_filter = StopFilter(("\n\nuser:",))
    assert stop_filter.feed("Paris.\n") == "Paris."
    assert stop_filter.feed("\nus") == ""
    assert stop_filter.feed("er: more") == ""
    assert stop_filter.stopped


def test_stop_filter_releases_held_text_that_was_no_stop() -> None:
    assert _run_filter(("END",), ["the E", "N", "d"]) == ("the ENd", False)
    assert _run_filter(("END",), ["the EN"]) == ("the EN", False)


def test_the_stop_that_completes_first_ends_the_text() -> None:
    # "c" completes before "bca" would: the text ends before "c", however it is split
    assert _run_filter(("c", "bca"), ["b", "c", "a"]) == ("b", True)
    assert _run_filter(("c", "bca"), ["bca"]) == ("b", True)


def test_stop_filter_cuts_at_the_earliest_stop() -> None:
    assert _run_filter(("c", "b"), ["a", "bc"]) == ("a", True)
    assert _run_filter(("x",), ["x at start"]) == ("", True)
    assert _run_filter((), ["no", " stops"]) == ("no stops", False)


@given(text=st.text(alphabet="abc\n", max_size=40), stops=st.lists(
    st.text(alphabet="abc\n", min_size=1, max_size=4), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 40), max_size=10))
def test_stop_filter_equals_cutting_the_whole_text(text: str, stops: list[str],
                                                   cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(min(c, len(text)) for c in cuts)})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    # the whole text cut before the stop sequence that completes first (ties: the one
    # that began first), however the pieces fall
    hits = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    expected = text[:min(hits)[1]] if hits else text
    assert _run_filter(tuple(stops), pieces) == (expected, bool(hits))


def test_stream_tally_measures_ttft_and_time_per_output_token() -> None:
    tally = StreamTally(started=10.0)
    tally.add(GenerationChunk("a", None, 1), 10.5)
    tally.add(GenerationChunk(" b", None, 2), 10.7)
    tally.add(GenerationChunk(" c", "stop", 1, prompt_tokens=12), 11.1)
    assert tally.text == "a b c" and tally.tokens == 4 and tally.prompt_tokens == 12
    assert tally.finish_reason == "stop"
    assert tally.ttft_s == pytest.approx(0.5)
    assert tally.tpot_s == pytest.approx(0.6 / 3)


def test_stream_tally_without_tokens_has_no_timings() -> None:
    tally = StreamTally(started=0.0)
    tally.add(GenerationChunk("", "length", 0), 1.0)
    assert tally.ttft_s is None and tally.tpot_s is None
