"""What the gateway decides about a request before routing it: its population, whether it fits, its answer length.

- the population (`select_population`) comes from the first of, in this order:
  1. the `X-Grid-Population` header;
  2. a model alias `MODEL@POPULATION` (e.g. `Qwen/Qwen3-8B@tokyo`), for clients and proxies that
     cannot send headers (LiteLLM drops them by default): MODEL must be the served model (else 404,
     as any other model);
  3. the OpenAI `user` field when it reads `population:NAME` (any other `user` is an end-user id,
     as in OpenAI's API, and is ignored);
  4. the caller's API key, when `GRID_API_KEYS` gives it one (`key1=tokyo`);
  5. the default: `GatewaySettings.default_population`, else the scenario's first population.
  Every one of the first three that a request carries must name a known population (400 listing the
  valid ones, naming where the bad name was), even when one before it decides; the keys' are
  checked at start;
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
ALIAS_SEPARATOR = "@"  # MODEL@POPULATION
USER_PREFIX = "population:"  # the `user` field as a population selector
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
        self.model_name = scenario.model.name
        self.context_tokens = scenario.model.context_tokens
        self._sizes = size_sampler(scenario.demand.sizes)
        self._size_rng = np.random.default_rng([seed, 7])
        self._size_block: list[int] = []

    def model_aliases(self) -> list[str]:
        """`MODEL@POPULATION` for every population, in the scenario's order."""
        return [f"{self.model_name}{ALIAS_SEPARATOR}{p}" for p in self.world.population_ids]

    def alias_population(self, model: str) -> str | None:
        """The population a request's `model` names (`MODEL@POPULATION`), None for the bare served
        model; 404 for any other model, as for an unknown one (the alias's population is not checked here)."""
        if model == self.model_name:
            return None
        base, sep, population = model.rpartition(ALIAS_SEPARATOR)
        if not sep or base != self.model_name:
            raise api.model_not_found(model)
        return population

    def select_population(self, headers, model: str, user: str | None = None, key_population: str | None = None) -> int:
        """The request's population (its index): the header's, else the model alias's, else the `user`
        field's (`population:NAME`), else the API key's, else the default (the module's docstring)."""
        alias = self.alias_population(model)
        chosen = None
        header = headers.get(POPULATION_HEADER)
        if header:  # an empty header names none, as before
            chosen = self._index(header, "header X-Grid-Population", "X-Grid-Population")
        if alias is not None:
            index = self._index(alias, f"model {model[:128]!r} ({self.model_name}{ALIAS_SEPARATOR}POPULATION)", "model")
            chosen = index if chosen is None else chosen
        if user is not None and user.startswith(USER_PREFIX):
            index = self._index(user[len(USER_PREFIX) :], f"field user ({USER_PREFIX}NAME)", "user")
            chosen = index if chosen is None else chosen
        if chosen is not None:
            return chosen
        return self.population_index[key_population or self.default_population]

    def _index(self, name: str, where: str, param: str) -> int:
        index = self.population_index.get(name)
        if index is None:
            raise api.ApiError(
                400,
                f"Unknown population {name[:64]!r} in {where}; valid populations: "
                + ", ".join(self.world.population_ids),
                param=param,
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
