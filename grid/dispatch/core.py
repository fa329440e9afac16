"""Every rule about a request's life, in one place for both drivers.

The simulator (virtual clock) and the gateway (wall clock) move requests through time and the
network; this core decides, for both:
- **routing**: the policy chooses among the candidates passed in (zones up and reachable, minus the
  ones this request already tried); a choice outside them means the nearest candidate. A policy
  that raises stops a simulation (a user bug to see) and falls back to the nearest zone live;
- **retries**: an attempt that failed before the request's first token left its zone is tried again
  on a zone not tried yet, at most `max_retries` times, within Envoy's retry budget
  (`grid.serving.retry`); the budget is asked before the policy, so a refused retry costs the
  policy no decision;
- **hedging** (policies with `hedge_after_s` and `choose_hedge`): one copy per request at most,
  copies ≤ `hedge_budget` × requests, never on a zone the request tried;
- **limits**: the context length (`grid.dispatch.limits`);
- **ending** a request exactly once into the policy's `observe` and every sink (stats, metrics,
  records, decision logs).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Final

from grid.dispatch.limits import CONTEXT_LENGTH, fit_answer, prompt_fits
from grid.dispatch.recording import StatsSink
from grid.dispatch.settings import DispatchSettings
from grid.dispatch.sinks import Outcome, Sinks
from grid.errors import GridInputError
from grid.routing.explain import Explanation, unexplained
from grid.routing.policy import Policy
from grid.routing.view import GridView
from grid.serving.request import CANCELLED, ERROR, REJECTED, Request
from grid.serving.retry import RetryBudget

log = logging.getLogger(__name__)

# Why an attempt failed: the zone refused it (queue full) / was down / failed under it or was
# unreachable / did not answer in time. A request out of retries ends rejected after "busy", failed
# otherwise.
BUSY: Final = "busy"
DOWN: Final = "down"
FAILED_ATTEMPT: Final = "error"
TIMEOUT: Final = "timeout"
RETRY_REASONS = (BUSY, DOWN, FAILED_ATTEMPT, TIMEOUT)
HEDGE_OUTCOMES = ("won", "lost", "failed")


class Attempts:
    """A request's attempts: the zones it tried (never one twice), its retries, why the last failed."""

    __slots__ = ("zones", "retries", "retrying", "reason", "last_zone", "hedged")

    def __init__(self, zone: int = -1) -> None:
        self.zones = [zone] if zone >= 0 else []
        self.retries = 0
        self.retrying = False  # counted in the retry budget
        self.reason = ""
        self.last_zone = zone  # the zone of the attempt that failed last
        self.hedged = 0  # hedge copies sent (their zones are tried, but they are no retries)

    def failed(self, zone: int, reason: str) -> None:
        self.last_zone, self.reason = zone, reason


def supports_hedging(policy) -> bool:
    return callable(getattr(policy, "hedge_after_s", None)) and callable(getattr(policy, "choose_hedge", None))


class Dispatch:
    """The rules, over one policy, one view and one set of sinks. Drivers call it; it owns no clock."""

    def __init__(
        self,
        policy,
        view: GridView,
        settings: DispatchSettings,
        stats: StatsSink,
        sinks: Sinks,
        population_ids: list[str] | tuple[str, ...],
        contain_policy_errors: bool = False,
    ) -> None:
        self.policy = policy
        self.policy_name = getattr(policy, "name", type(policy).__name__)
        self.view = view
        self.settings = settings
        self.stats = stats  # the run's own figures: always fed, first
        self.sinks = sinks  # anything else (metrics, records, decision logs), only if someone listens
        self.population_ids = population_ids
        self.contain = contain_policy_errors
        self.budget = RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min)
        self._choose = policy.choose
        observe = getattr(policy, "observe", None)
        if observe is not None and getattr(type(policy), "observe", None) is Policy.observe:
            observe = None  # the base class's no-op: skip the call
        self._observe = observe
        self.hedging = supports_hedging(policy)
        self.hedge_budget = float(getattr(policy, "hedge_budget", 0.0)) if self.hedging else 0.0
        self.hedges = dict.fromkeys(("sent", *HEDGE_OUTCOMES), 0)
        self.arrivals = 0
        self.in_flight = 0  # arrived and not ended: the retry budget's base
        self.decision_s = 0.0  # the last choice's wall time (a metric of the policy's cost)

    # --- arrival and limits ------------------------------------------------------------------------

    def arrive(self, request: Request, now_s: float) -> bool:
        """A request arrived: count it; fit its answer to the context. False when its prompt does not
        fit: it has then ended, rejected."""
        self.arrivals += 1
        self.in_flight += 1
        self.stats.arrived(request, now_s)
        if self.sinks.to_arrived:
            self.sinks.arrived(request, now_s)
        prompt, context = request.prompt_tokens, self.settings.context_tokens
        if prompt + request.output_tokens > context or prompt >= context:  # cheap test first; the rule below
            if not prompt_fits(prompt, context):
                self.end(request, Outcome(REJECTED, -1, reason=CONTEXT_LENGTH), None, now_s)
                return False
            request.output_tokens, request.finish_reason = fit_answer(
                prompt, request.output_tokens, request.finish_reason, context
            )
        return True

    # --- routing -----------------------------------------------------------------------------------

    def route(self, request: Request, now_s: float) -> int:
        """The first attempt's zone; -1 when no zone is up and reachable from the request's population."""
        view = self.view
        if now_s >= view.spill_due_s:  # a shortlist's spill picks follow load (GridView)
            view.refresh_spill(now_s)
        candidates = view.candidates[request.population]
        if not candidates:
            return -1
        if self.sinks.to_routed or self.sinks.to_decided:  # timed, or explained: someone reads the decision
            return self._decide(self._choose, request, candidates, now_s, candidates[0])
        view.now_s = now_s
        try:  # the hot path of `_decide`, untimed
            zi = self._choose(request, candidates, view)
        except Exception as exc:
            return self._policy_raised(exc, self._choose, request, now_s, candidates[0])
        return zi if zi in candidates else self._outside(zi, self._choose, now_s, candidates[0])

    def retry(self, request: Request, attempts: Attempts, now_s: float) -> int:
        """After a failed attempt (`attempts.failed(...)` said where and why): the next zone, or -1
        when the request must end (out of retries, over the budget, no zone left to try)."""
        if attempts.retries >= self.settings.max_retries:
            return -1
        if not attempts.retrying and not self.budget.allows(self.in_flight):
            return -1
        tried = attempts.zones
        candidates = [z for z in self.view.candidates[request.population] if z not in tried]
        if not candidates:
            return -1
        zi = self._decide(self._choose, request, candidates, now_s, candidates[0])
        if not attempts.retrying:
            attempts.retrying = True
            self.budget.retrying += 1
        attempts.retries += 1
        tried.append(zi)
        self.stats.retried(request, attempts.last_zone, attempts.reason, zi, now_s)
        self.sinks.retried(request, attempts.last_zone, attempts.reason, zi, now_s)
        return zi

    def _decide(self, hook, request: Request, candidates: list[int], now_s: float, fallback: int) -> int:
        """`hook(request, candidates, view)` (the policy's `choose` or `choose_hedge`); `fallback` when
        its answer is not one of the candidates (the nearest for a route, -1 for a hedge), or when it
        raises in a driver that contains policy errors."""
        view = self.view
        view.now_s = now_s
        timed = bool(self.sinks.to_routed)  # its cost goes to the route metric, when someone reads it
        explained = bool(self.sinks.to_decided) and hook is self._choose  # hedge copies are not explained
        why = self._explain(request, candidates) if explained else None
        if timed:
            started = time.perf_counter()
        try:
            zi = hook(request, candidates, view)
        except Exception as exc:
            return self._policy_raised(exc, hook, request, now_s, fallback)
        if timed:
            self.decision_s = time.perf_counter() - started
        zi = zi if zi in candidates else self._outside(zi, hook, now_s, fallback)
        if explained:
            self._explained(request, candidates, why, zi, now_s)
        return zi

    def _explain(self, request: Request, candidates: list[int]) -> Explanation | None:
        """The policy's explanation, on the view `choose` is about to see; None when it has none or its
        `explain` failed (the decision still happens)."""
        explain = getattr(self.policy, "explain", None)
        if explain is None:
            return None
        try:
            return explain(request, candidates, self.view)
        except Exception:
            log.exception("policy %s: explain failed; the decision is recorded unexplained", self.policy_name)
            return None

    def _explained(self, request: Request, candidates: list[int], why: Explanation | None, zi: int, now: float) -> None:
        if why is None:
            rtt = self.view.rtt_s[request.population]
            why = unexplained(self.policy_name, candidates, rtt, zi)
        elif why.winner != zi:  # a policy whose explanation does not match its choice: say so, keep the choice
            why = replace(why, winner=zi, reason=f"chose differently from its explanation ({why.reason})")
        self.sinks.decided(request, why, now)

    def _policy_raised(self, exc: Exception, hook, request: Request, now_s: float, fallback: int) -> int:
        if not self.contain:
            raise GridInputError(
                f"policy {self.policy_name!r} raised {exc!r} in {hook.__name__} at t={now_s:.3f}s on request "
                f"{request.id} (population {self.population_ids[request.population]})"
            ) from exc
        log.exception("policy %s raised in %s; using the fallback", self.policy_name, hook.__name__)
        return fallback

    def _outside(self, zi, hook, now_s: float, fallback: int) -> int:
        """The policy answered something not among the candidates: the fallback, unless it is no zone
        index at all in a driver that reports policy bugs."""
        if zi is not None and type(zi) is not int and not self.contain:
            raise GridInputError(
                f"policy {self.policy_name!r} returned {zi!r} from {hook.__name__} at t={now_s:.3f}s: a zone "
                "index must be an int, one of the candidates passed in"
            )
        return fallback

    def routed(self, request: Request, zone: int, rtt_s: float, now_s: float) -> None:
        """An attempt left for `zone` (the driver applied the network: `rtt_s`)."""
        self.view.zones[zone].sent_since_report += 1
        if self.sinks.to_routed:
            self.sinks.routed(request, zone, rtt_s, self.decision_s, now_s)

    # --- hedging -----------------------------------------------------------------------------------

    def hedge_delay_s(self, request: Request, now_s: float) -> float | None:
        """At arrival: after how long without a first token the request gets a copy (None: never)."""
        if not self.hedging:
            return None
        self.view.now_s = now_s
        try:
            delay_s = self.policy.hedge_after_s(request, self.view)
        except Exception as exc:
            if not self.contain:
                raise GridInputError(f"policy {self.policy_name!r} raised {exc!r} in hedge_after_s") from exc
            log.exception("policy %s: hedge_after_s raised; no hedge", self.policy_name)
            return None
        return delay_s if delay_s is not None and delay_s >= 0.0 else None

    def hedge(self, request: Request, attempts: Attempts | None, now_s: float) -> int:
        """The copy's zone when a hedge is due (-1: none), within the budget, never a zone tried."""
        if self.hedges["sent"] >= self.hedge_budget * self.arrivals:
            return -1
        tried = attempts.zones if attempts is not None else ()
        candidates = [z for z in self.view.candidates[request.population] if z != request.zone and z not in tried]
        if not candidates:
            return -1
        zb = self._decide(self.policy.choose_hedge, request, candidates, now_s, -1)
        if zb >= 0:
            self.hedges["sent"] += 1
            if attempts is not None:
                attempts.zones.append(zb)
                attempts.hedged += 1
        return zb

    def hedge_ended(self, request: Request, zone: int, outcome: str, now_s: float) -> None:
        """A copy's race ended: won (its first token came first), lost, or failed before a token."""
        self.hedges[outcome] += 1
        self.sinks.hedged(request, zone, outcome, now_s)

    # --- the end -----------------------------------------------------------------------------------

    def end(self, request: Request, outcome: Outcome, attempts: Attempts | None, now_s: float) -> None:
        """The request ended: out of the retry budget, into the policy's feedback and every sink. A
        request no zone ever took ends rejected, whatever failed. A request is in flight until its
        client has the answer (or the error): the drivers end it then."""
        self.in_flight -= 1
        if attempts is not None and attempts.retrying:
            attempts.retrying = False
            self.budget.retrying -= 1
        if outcome.zone < 0 and outcome.status in (ERROR, CANCELLED):
            outcome = Outcome(REJECTED, -1, reason=outcome.reason)
        request.status = outcome.status
        if self._observe is not None:
            self._observe(request)
        self.stats.ended(request, outcome, now_s)
        if self.sinks.to_ended:
            self.sinks.ended(request, outcome, now_s)


def client_times(request: Request) -> tuple[float, float, float]:
    """TTFT, TPOT and E2E as the client sees them, from the zone-side times of a finished request."""
    half = request.rtt_s * 0.5
    ttft = request.first_token_s + half - request.arrival_s
    e2e = request.finish_s + half - request.arrival_s
    n_out = request.output_tokens
    tpot = (e2e - ttft) / (n_out - 1) if n_out > 1 else math.nan
    return ttft, tpot, e2e
