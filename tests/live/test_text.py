"""The live grid's synthetic text (grid.live.text): exact Qwen token counts, prefix stability, stop cuts."""

from __future__ import annotations

import pytest

from grid.live.text import generate_pieces, make_text, stop_cut
from grid.live.tokenizer import count

SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_are_prefix_stable_and_count_honestly(seed):
    longest = generate_pieces(400, seed)
    for n in (0, 1, 2, 7, 63, 399, 400):
        pieces = generate_pieces(n, seed)
        assert pieces == longest[:n]  # what lets a stop be found before routing
        assert count("".join(pieces)) == n


def test_seeds_give_different_texts():
    assert len({make_text(30, seed) for seed in SEEDS}) == len(SEEDS)


def _offsets(pieces: list[str]) -> list[int]:
    """Where each piece starts in the joined text."""
    starts, at = [], 0
    for piece in pieces:
        starts.append(at)
        at += len(piece)
    return starts


@pytest.mark.parametrize("seed", SEEDS)
def test_cut_is_the_whole_tokens_before_the_first_stop(seed):
    """Any substring of the answer as the stop: the answer keeps the tokens that end before it
    starts, and the kept text never holds a stop (it would have been completed first)."""
    pieces = generate_pieces(60, seed)
    text = "".join(pieces)
    for start, length in ((0, 1), (3, 4), (40, 9), (len(text) - 5, 5), (len(text) // 2, 30)):
        stop = text[start : start + length]
        cut = stop_cut(60, seed, [stop])
        first = text.find(stop)
        assert cut == sum(1 for s, p in zip(_offsets(pieces), pieces, strict=True) if s + len(p) <= first)
        kept = make_text(cut, seed)
        assert stop not in kept and text.startswith(kept)


def test_stop_at_the_start_gives_an_empty_answer():
    text = make_text(30, 1)
    assert stop_cut(30, 1, [text[:1]]) == 0
    assert stop_cut(30, 1, [text[:12]]) == 0


def test_stop_in_the_middle_on_a_token_boundary():
    pieces = generate_pieces(50, 2)
    stop = "".join(pieces[20:23])  # three whole tokens: their first occurrence is here
    assert "".join(pieces).find(stop) == len("".join(pieces[:20]))
    assert stop_cut(50, 2, [stop]) == 20


def test_stop_spanning_tokens_drops_the_token_it_starts_in():
    pieces = generate_pieces(50, 3)
    i = next(i for i in range(10, 40) if len(pieces[i]) >= 4 and pieces[i + 1][0] == " ")
    stop = pieces[i][-2:] + pieces[i + 1]  # the tail of token i and the whole of token i + 1
    text = "".join(pieces)
    assert text.find(stop) == len("".join(pieces[: i + 1])) - 2
    assert stop_cut(50, 3, [stop]) == i


def test_no_stop_found():
    assert stop_cut(50, 4, ["\n"]) is None  # generated text never breaks lines
    assert stop_cut(50, 4, ["zebra", "QQ"]) is None
    assert stop_cut(50, 4, []) is None
    assert stop_cut(0, 4, ["a"]) is None
    # A stop that would straddle the end of the answer is not in it.
    pieces = generate_pieces(51, 4)
    assert stop_cut(50, 4, [pieces[49] + pieces[50]]) in (None, *range(49))


def test_the_first_stop_completed_wins():
    pieces = generate_pieces(60, 5)
    text = "".join(pieces)
    late, early = "".join(pieces[30:33]), "".join(pieces[9:11])
    assert text.find(late) > text.find(early) == len("".join(pieces[:9]))
    assert stop_cut(60, 5, [late, early]) == stop_cut(60, 5, [early, late]) == 9
    # Overlapping: a long stop starting at token 5 and a short one inside it, completed first.
    long, short = "".join(pieces[5:15]), "".join(pieces[8:10])
    assert text.find(long) == len("".join(pieces[:5])) and text.find(short) == len("".join(pieces[:8]))
    assert stop_cut(60, 5, [long, short]) == 8  # as an engine checking after every token stops
