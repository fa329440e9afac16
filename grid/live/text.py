"""Synthetic text for the live grid, which serves no real model.

Every answer is counted with Qwen's tokenizer (`grid.live.tokenizer`): it is built of pieces that are
each one Qwen token and that Qwen's pre-tokenizer keeps apart — words of `_WORDS` (each one token
bare, with a leading space and capitalized: tests/live/test_tokenizer.py checks all 4 forms) and
sentence-end marks — so the answer of `completion_tokens` pieces re-tokenizes to exactly that count.

Generated text is deterministic per seed: a sentence-shaped stream of words and punctuation. It is
**prefix-stable**: the answer of n tokens is the first n tokens of the answer of any m > n tokens
(same seed). So a stop sequence can be found before the request is routed (`stop_cut`): the answer
is cut to the tokens before it and the zone generates only those, as vLLM stops generating when it
sees a stop string.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from grid.live.tokenizer import CHAT_OVERHEAD_TOKENS

_PROSE = (
    "the grid routes each request to a zone where it can run best while demand tracks the sun "
    "over regions and every unit of work has a price and a carbon cost that change by place and hour "
    "power moves from supply to load through lines of finite capacity so a router must balance "
    "delay queue depth and free room when one region is dark the others take its traffic and "
    "users never notice tokens stream back over the network one small piece at a time"
)
_WORDS = tuple(dict.fromkeys(_PROSE.split(" ")))
_SENTENCE_END = (".", ".", ".", "!", "?")
_MARKS_SALT = 0x5E17E9CE  # seeds the sentence-end stream apart from the word stream


def generate_pieces(n_tokens: int, seed: int) -> list[str]:
    """`n_tokens` token strings whose concatenation is a well-formed text of exactly `n_tokens` tokens.

    Prefix-stable (see the module docstring): words and sentence ends come from two random streams,
    each consumed in text order, so no draw depends on `n_tokens`."""
    words = random.Random(seed).choices(_WORDS, k=n_tokens)  # one draw per word, in order
    marks = random.Random(seed ^ _MARKS_SALT)
    pieces: list[str] = []
    capital = True
    since_stop = 0
    for i in range(n_tokens):
        # Close a sentence every 6–14 words (a mark after a letter is a token of its own), never first.
        if since_stop >= 6 and i > 0 and pieces[-1][-1].isalnum() and marks.random() < 0.15:
            pieces.append(marks.choice(_SENTENCE_END))
            capital = True
            since_stop = 0
            continue
        word = words[i]
        if capital:
            word = word.capitalize()
            capital = False
        pieces.append(word if i == 0 else " " + word)
        since_stop += 1
    return pieces


def stop_cut(n_tokens: int, seed: int, stops: Sequence[str]) -> int | None:
    """Tokens of the answer (`n_tokens`, `seed`) before its first stop sequence; None if none occurs.

    The first stop is the first one *completed* as the text is generated (earliest end; on a tie the
    one that starts first), as an engine checking its stop strings after every token finds it. The
    answer is cut at a token boundary: a token that holds the start of the stop is dropped whole
    (the client gets the whole tokens before the stop, never the stop itself)."""
    if not stops or n_tokens <= 0:
        return None
    pieces = generate_pieces(n_tokens, seed)
    text = "".join(pieces)
    found = [(at + len(stop), at) for stop in stops if stop and (at := text.find(stop)) >= 0]
    if not found:
        return None
    _, start = min(found)
    return bisect_right(list(accumulate(map(len, pieces))), start)  # pieces that end at or before it


def make_text(n_tokens: int, seed: int) -> str:
    return "".join(generate_pieces(n_tokens, seed))


def filler_words(n_words: int, seed: int = 0) -> str:
    """Text of exactly `n_words` Qwen tokens (space-separated words), for building prompts."""
    rng = random.Random(seed)
    return " ".join(rng.choices(_WORDS, k=n_words))


def numbered_words(index: int, width: int) -> list[str]:
    """`index` spelled as `width` words (its base-len(_WORDS) digits, most significant first): distinct
    indices below len(_WORDS) ** width give distinct sequences, each word one Qwen token as in
    `filler_words`. Leading a prompt, they keep its first KV block apart from every other prompt's."""
    digits = []
    for _ in range(width):
        index, digit = divmod(index, len(_WORDS))
        digits.append(_WORDS[digit])
    return digits[::-1]


def number_width(count: int) -> int:
    """The width `numbered_words` needs to keep `count` indices apart."""
    width, reach = 1, len(_WORDS)
    while reach < count:
        width, reach = width + 1, reach * len(_WORDS)
    return width


def chat_content_for(prompt_tokens: int, seed: int = 0) -> str:
    """A user message whose chat prompt (Qwen3's template, one message) counts `prompt_tokens` Qwen
    tokens (at least the template's own `CHAT_OVERHEAD_TOKENS`)."""
    return filler_words(max(0, prompt_tokens - CHAT_OVERHEAD_TOKENS), seed)
