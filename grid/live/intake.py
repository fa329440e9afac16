"""What the gateway decides about a request before routing it: its population, whether it fits, its answer length.

- the population comes from the `X-Grid-Population` header (400 listing the valid ones; default: the
  scenario's first population or `GatewaySettings.default_population`);
- prompt + `max_tokens` must fit the context (400, as vLLM answers);
- the answer length is decided up front: a draw from the scenario's output size distribution, capped
  by `max_tokens`/`max_completion_tokens` and the context (finish_reason "length" when capped, else
  "stop"; `ignore_eos` makes it exactly `max_tokens`), seeded by the request's `seed` when it has one;
- `stop` sequences then cut it (`apply_stop`): the answer's text is known before routing (`grid.live.text`
  is prefix-stable), so the zone generates only the tokens before the first stop (finish_reason
  "stop"), down to 0 tokens when the text starts with one (empty text, as vLLM answers). `ignore_eos`
  does not disable stop sequences (vLLM: it ignores the end-of-sequence token only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grid.demand.arrivals import size_sampler
from grid.live import openai_api as api
from grid.live.text import stop_cut
from grid.scenario import Scenario
from grid.serving.request import LENGTH, STOP
from grid.world import World

POPULATION_HEADER = "x-grid-population"
SAMPLE_BLOCK = 1024


def apply_stop(output_tokens: int, finish_reason: str, text_seed: int, stop: Sequence[str]) -> tuple[int, str]:
    """(output tokens, finish reason) once the answer (`output_tokens` of text seeded `text_seed`)
    is cut before its first stop sequence: unchanged when none occurs in it.

    0 tokens is a valid answer: the serving model finishes such a request at its prefill (first and
    last token at once), and the client gets empty content with finish_reason "stop"."""
    cut = stop_cut(output_tokens, text_seed, stop)
    return (output_tokens, finish_reason) if cut is None else (cut, STOP)


class Intake:
    """Population lookup, context checks and answer lengths for one scenario."""

    apply_stop = staticmethod(apply_stop)  # the gateway calls it as `self.intake.apply_stop`

    def __init__(self, scenario: Scenario, world: World, seed: int, default_population: str | None) -> None:
        self.world = world
        self.seed = seed
        self.population_index = {p: i for i, p in enumerate(world.population_ids)}
        default = default_population or world.population_ids[0]
        if default not in self.population_index:
            raise ValueError(f"default population {default!r} is not in the scenario")
        self.default_population = default
        self.context_tokens = scenario.model.context_tokens
        self._sizes = size_sampler(scenario.demand.sizes)
        self._size_rng = np.random.default_rng([seed, 7])
        self._size_block: list[int] = []

    def population_of(self, headers) -> int:
        name = headers.get(POPULATION_HEADER) or self.default_population
        index = self.population_index.get(name)
        if index is None:
            raise api.ApiError(
                400,
                f"Unknown population {name[:64]!r} in header X-Grid-Population; valid populations: "
                + ", ".join(self.world.population_ids),
                param="X-Grid-Population",
                code="unknown_population",
            )
        return index

    def answer_length(self, prompt_tokens: int, limit: int | None, ignore_eos: bool, seed: int | None):
        """(output tokens, finish reason) of a request with this prompt, token limit and seed."""
        room = self.context_tokens - prompt_tokens
        cap = room if limit is None else min(limit, room)
        if ignore_eos and limit is not None:
            return cap, LENGTH
        if seed is not None:
            drawn = int(self._sizes(np.random.default_rng([self.seed, 11, seed & 0xFFFFFFFFFFFF]), 1)[1][0])
        else:
            if not self._size_block:
                self._size_block = self._sizes(self._size_rng, SAMPLE_BLOCK)[1].tolist()
            drawn = int(self._size_block.pop())
        return (cap, LENGTH) if drawn > cap else (max(1, drawn), STOP)

    def context_error(self, chat: bool, prompt_tokens: int) -> api.ApiError:
        """The 400 for a prompt that does not fit the context (the dispatch core's rule, as vLLM answers)."""
        what = "messages" if chat else "prompt"
        return api.ApiError(
            400,
            f"This model's maximum context length is {self.context_tokens} tokens. However, your "
            f"{what} resulted in {prompt_tokens} tokens.",
            param="messages" if chat else "prompt",
            code="context_length_exceeded",
        )

    def check_token_limit(self, chat: bool, prompt_tokens: int, limit: int | None) -> None:
        """A prompt that fits, with a `max_tokens` that does not: the client's own bad input (400)."""
        what = "messages" if chat else "prompt"
        # `limit` is bounded by the request's schema (≤ 2**63 − 1), so formatting it is cheap and safe.
        if limit is not None and prompt_tokens < self.context_tokens and prompt_tokens + limit > self.context_tokens:
            raise api.ApiError(
                400,
                f"This model's maximum context length is {self.context_tokens} tokens. However, you requested "
                f"{prompt_tokens + limit} tokens ({prompt_tokens} in the {what}, {limit} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="max_completion_tokens" if chat else "max_tokens",
                code="context_length_exceeded",
            )
