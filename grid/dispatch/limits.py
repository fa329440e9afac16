"""The model's context limit, one rule for both drivers: prompt + answer must fit the context.

A prompt that fills the context is refused (`CONTEXT_LENGTH`); an answer that would overflow it is
cut where the context ends (finish reason `length`), as vLLM does.
"""

from __future__ import annotations

from typing import Final

from grid.serving.request import LENGTH

CONTEXT_LENGTH: Final = "context_length"  # why a request was refused: its prompt does not fit


def prompt_fits(prompt_tokens: int, context_tokens: int) -> bool:
    """Room is left for at least one answer token."""
    return prompt_tokens < context_tokens


def fit_answer(prompt_tokens: int, output_tokens: int, finish_reason: str, context_tokens: int) -> tuple[int, str]:
    """The answer length and finish reason once the context limit applies (the prompt fits)."""
    room = context_tokens - prompt_tokens
    if output_tokens > room:
        return room, LENGTH
    return output_tokens, finish_reason
