"""One inference request as the serving model and the drivers see it."""

from __future__ import annotations

from typing import Final

# How a request ended (vLLM's finished_reason values, plus ours for the grid).
STOP: Final = "stop"  # the model finished its answer
LENGTH: Final = "length"  # cut at max_tokens
ERROR: Final = "error"  # failed after admission (its zone went down, it was partitioned away)
REJECTED: Final = "rejected"  # never admitted: queue full, zone down, no zone could take it
CANCELLED: Final = "cancelled"  # withdrawn by the router (the losing copy of a hedged request)


class Request:
    """Mutable record of one request; times are seconds on the driver's clock.

    Policy-visible fields: `population`, `prompt_tokens`, `arrival_s`. `output_tokens` is the true
    answer length the serving model will produce; a router does not know it in advance.

    Prefix information (optional; None/0 for workloads without it, which then never hit the cache):
    `prefix_hashes` are chain hashes of the prompt's full blocks in order, each block
    `prefix_block_tokens` tokens long (a hash identifies the whole prefix up to its block's end, as
    vLLM's block hashes and Mooncake's `hash_ids` do). Any block size works: the zone's KV cache maps
    a 512-token trace block onto 32 of its own 16-token blocks. The zone sets `cached_tokens`
    (prompt tokens served from its prefix cache, vLLM's `usage.prompt_tokens_details.cached_tokens`)
    when the request is placed on an engine. Hashes may run past the prompt: units past
    `prompt_tokens` describe the answer (its blocks are cached when the request finishes, as vLLM
    caches generated blocks, so a conversation's next turn can reuse them); they never count as hits
    of this request.
    """

    __slots__ = (
        "id",
        "population",
        "prompt_tokens",
        "output_tokens",
        "arrival_s",
        "rtt_s",
        "zone",
        "replica",
        "finish_reason",
        "admit_s",
        "scheduled_s",
        "first_token_s",
        "finish_s",
        "decode_start_step",
        "status",
        "cancelled",
        "attempts",
        "twin",
        "prefix_hashes",
        "prefix_block_tokens",
        "cached_tokens",
        "kv_units",
        "kv_blocks",
    )
    # Set by the serving model when the request is placed on an engine (see the end of __init__).
    kv_units: int
    kv_blocks: int

    def __init__(
        self,
        request_id: int,
        population: int,
        prompt_tokens: int,
        output_tokens: int,
        arrival_s: float,
        finish_reason: str = STOP,
        prefix_hashes: tuple[int, ...] | None = None,
        prefix_block_tokens: int = 0,
    ) -> None:
        self.id = request_id
        self.population = population
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.arrival_s = arrival_s
        self.finish_reason = finish_reason
        self.rtt_s = 0.0
        self.zone = -1
        self.replica = -1
        self.admit_s = -1.0
        self.scheduled_s = -1.0
        self.first_token_s = -1.0
        self.finish_s = -1.0
        self.decode_start_step = 0
        self.status = ""
        self.cancelled = False
        self.attempts = 0
        self.twin: Request | None = None  # the other copy of a hedged request, while both are open
        if prefix_hashes is not None and prefix_block_tokens <= 0:
            raise ValueError("prefix_hashes need prefix_block_tokens > 0 (the tokens each hash covers)")
        self.prefix_hashes = prefix_hashes
        self.prefix_block_tokens = prefix_block_tokens
        self.cached_tokens = 0
        # Set by the serving model when the request is placed on an engine (not here: it costs per
        # request): kv_blocks, the KV blocks its whole footprint takes; kv_units (with prefix_hashes),
        # how many of its hash units it holds in that engine's prefix cache.

    def copy(self, request_id: int) -> Request:
        """A hedge's second copy: the same prompt (prefix included), answer and arrival, nothing served yet."""
        return Request(
            request_id, self.population, self.prompt_tokens, self.output_tokens, self.arrival_s,
            self.finish_reason, self.prefix_hashes, self.prefix_block_tokens,
        )  # fmt: skip

    @property
    def kv_tokens(self) -> int:
        """KV-cache footprint when complete: the prompt plus every generated token."""
        return self.prompt_tokens + self.output_tokens

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, population={self.population}, prompt={self.prompt_tokens}, "
            f"output={self.output_tokens}, zone={self.zone}, status={self.status or 'open'})"
        )
