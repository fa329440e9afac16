"""One inference request as the serving model and the drivers see it."""

from __future__ import annotations

# How a request ended (vLLM's finished_reason values, plus ours for the grid).
STOP = "stop"  # the model finished its answer
LENGTH = "length"  # cut at max_tokens
ERROR = "error"  # failed after admission (its zone went down, it was partitioned away)
REJECTED = "rejected"  # never admitted: queue full, zone down, no zone could take it
CANCELLED = "cancelled"  # withdrawn by the router (the losing copy of a hedged request)


class Request:
    """Mutable record of one request; times are seconds on the driver's clock.

    Policy-visible fields: `population`, `prompt_tokens`, `arrival_s`. `output_tokens` is the true
    answer length the serving model will produce; a router does not know it in advance.
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
    )

    def __init__(
        self,
        request_id: int,
        population: int,
        prompt_tokens: int,
        output_tokens: int,
        arrival_s: float,
        finish_reason: str = STOP,
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

    @property
    def kv_tokens(self) -> int:
        """KV-cache footprint when complete: the prompt plus every generated token."""
        return self.prompt_tokens + self.output_tokens

    def __repr__(self) -> str:
        return (
            f"Request(id={self.id}, population={self.population}, prompt={self.prompt_tokens}, "
            f"output={self.output_tokens}, zone={self.zone}, status={self.status or 'open'})"
        )
