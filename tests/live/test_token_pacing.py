"""The pacer spaces a stream's tokens between the zone's promises, one chunk per token by default."""

import math

import pytest

from grid.live.token_pacing import TokenPacer


def drain(pacer: TokenPacer) -> list[tuple[int, float]]:
    """Every chunk the pacer has due now, as (tokens sent after it, due time)."""
    chunks = []
    while (chunk := pacer.next_chunk()) is not None and not pacer.complete:
        pacer.sent_chunk(*chunk)
        chunks.append(chunk)
    return chunks


def test_tokens_are_spaced_evenly_between_promises():
    pacer = TokenPacer()
    pacer.first(1.0)
    assert drain(pacer) == [(1, 1.0)]
    pacer.promise(5, 1.02)  # tokens 2..5 by 1.02: one every 5 ms
    chunks = drain(pacer)
    assert [n for n, _ in chunks] == [2, 3, 4, 5]
    assert [round(t, 6) for _, t in chunks] == [1.005, 1.01, 1.015, 1.02]
    pacer.finish(7, 1.03, 1.0)  # the last two tokens, the last at the finish
    assert [(n, round(t, 6)) for n, t in drain(pacer)] == [(6, 1.025), (7, 1.03)]
    assert pacer.complete


def test_a_lower_promise_makes_the_stream_wait():
    pacer = TokenPacer()
    pacer.first(0.0)
    drain(pacer)
    pacer.promise(10, 0.1)
    drain(pacer)
    pacer.promise(8, 0.12)  # the model fell behind its earlier promise (a prefill stalled its run)
    assert pacer.next_chunk() is None
    pacer.promise(12, 0.14)
    assert drain(pacer)[-1] == (12, 0.14)


def test_chunks_of_several_tokens_and_the_finish_reason_chunk():
    pacer = TokenPacer(tokens_per_chunk=3)
    pacer.first(0.0)
    pacer.promise(7, 0.06)  # arrives with the first token: the first chunk still holds tokens 1..3
    chunks = drain(pacer)
    assert [n for n, _ in chunks] == [3, 6, 7]
    assert chunks[-1][1] == pytest.approx(0.06)
    assert chunks[0][1] == pytest.approx(0.02)  # token 3 of 1..7 spaced from 0 to 0.06
    pacer.finish(8, 0.07, 0.0)
    assert drain(pacer) == [(8, 0.07)]


def test_an_empty_answer_is_one_chunk_at_the_finish():
    pacer = TokenPacer()
    pacer.finish(0, 0.5, 0.5)
    assert pacer.next_chunk() == (0, 0.5)
    pacer.sent_chunk(0, 0.5)
    assert pacer.complete


def test_an_answer_done_before_its_promises_is_spaced_to_its_finish():
    pacer = TokenPacer()
    pacer.finish(4, 0.4, 0.1)  # first token at 0.1 and the finish came together (a short answer)
    chunks = drain(pacer)
    assert [n for n, _ in chunks] == [1, 2, 3, 4]
    assert chunks[0][1] == 0.1 and chunks[-1][1] == 0.4
    assert all(b[1] > a[1] for a, b in zip(chunks, chunks[1:], strict=False))


def test_refuses_chunks_of_no_tokens():
    with pytest.raises(ValueError):
        TokenPacer(0)
    assert math.isnan(TokenPacer().first_s)
