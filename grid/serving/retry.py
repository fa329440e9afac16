"""Retries, defined once for both drivers: how often a request is tried again elsewhere, and Envoy's budget.

An attempt that fails before the request's first token left its zone (the zone refused it: queue
full, down, unreachable; or the zone failed while the request waited or was in prefill) is tried
again on another zone chosen by the same policy among the zones not tried yet: at most
`max_retries` times (so at most 1 + `max_retries` zones), never twice on one zone, and only while
the retry budget allows. The budget is Envoy's: requests retrying at once ≤ max(`retry_budget_min`,
`retry_budget_ratio` × requests in flight). A request counts in the budget from its first retry
until it ends.

The defaults are the live gateway's (`GatewaySettings`) and the scenario's (`routing.max_retries`,
`routing.retry_budget_ratio`, `routing.retry_budget_min`). This module imports nothing from the
grid, so the scenario schema, the simulator and the gateway can all use it.
"""

from __future__ import annotations

MAX_RETRIES = 2  # attempts = 1 + max_retries, each on another zone
RETRY_BUDGET_RATIO = 0.2  # Envoy's retry budget: 20% of active requests …
RETRY_BUDGET_MIN = 10  # … but at least 10 retrying at once (Envoy: 3; a killed zone strands ≈5–10 live)


class RetryBudget:
    """Envoy's retry budget: retries in flight ≤ max(min_concurrency, ratio × active requests).

    `retrying` is the number of requests retrying now; the driver increments it at a request's first
    retry and decrements it when that request ends."""

    def __init__(self, ratio: float = RETRY_BUDGET_RATIO, min_concurrency: int = RETRY_BUDGET_MIN) -> None:
        self.ratio = ratio
        self.min_concurrency = min_concurrency
        self.retrying = 0

    def allows(self, active: int) -> bool:
        """May one more request start retrying, with `active` requests in flight (itself included)?"""
        return self.retrying < max(self.min_concurrency, self.ratio * active)
