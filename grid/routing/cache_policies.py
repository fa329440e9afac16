"""Cache-aware routing: KV-cache locality first, load second, across regions (issue 16).

A prompt whose prefix a zone holds in its prefix cache skips the prefill of those tokens there. Two
ways to know where prefixes are, as today's routers do:
- `prefix_aware`: the router's own record of what it sent where (`PrefixIndex`; SGLang's cache-aware
  router), no zone reports needed;
- `kv_aware`: the zones' own account of their caches, in their load reports (llm-d's and Dynamo's
  KV-event scorers), as stale as every other reported signal.
Both choose as `latency_aware` does, by predicted client TTFT, with two changes for a zone expected
to hit (`CacheAware`): the prefill the hit saves counts 1/(1 − u) times at the zone's utilization u,
and the utilization headroom rule does not shut such a zone out while its queue is short and its load
balanced. So a long cached prefix is worth crossing a region for only when what it saves outweighs
the extra round trip (SkyWalker's cross-region argument). Requests without prefix information are routed exactly as by
`latency_aware`. `latency_aware_no_cache` is `latency_aware` before it learnt caches: the baseline
the issue's goals compare against.
"""

from __future__ import annotations

from grid.routing import explain as ex
from grid.routing.explain import Explanation, Row
from grid.routing.policies import LatencyAware, describe_ttft, estimated_utilization, latency_terms, predicted_ttft_s
from grid.routing.prefix_index import held_units
from grid.routing.view import GridView
from grid.serving.request import Request


class CacheAware(LatencyAware):
    """`latency_aware` for requests with prefix information, where a zone's expected hit
    (`expected_hit_tokens`) changes two things:

    - Its score is the predicted TTFT less the saved prefill × 1/(1 − u), u the zone's estimated
      utilization (capped at `utilization_cap`). Prefill a zone skips is also capacity it keeps: at
      utilization u the work saved shortens the waits of the requests behind it by about u/(1 − u)
      times itself (an M/M/1 busy period), so it is worth more to the grid than to the request alone,
      and most where the zone is busy. Weighted 1×, kv_aware moved conversations off their caches at
      the sessions peak (75% load): 76-78% of prompt tokens hit instead of 88% (RESULTS.md, issue 16).
    - The headroom rule need not shut it out. Zones count a prompt's whole prefill as work when they
      admit it (they cannot know yet what their replicas hold), so where most prompt tokens hit their
      utilization overstates their load and the rule would move conversations away from their caches
      at moderate load (under it for every zone, kv_aware hit 73-74% at that peak). A hit excuses the
      zone's utilization while its reported queue is under `max_queued_per_replica` waiting requests
      per replica and its load (outstanding per replica, this router's sends since the report
      included) is within `balance_abs_threshold` or `balance_rel_threshold`× of the least loaded
      candidate's: SGLang's router's rule, cache first unless imbalanced. The zone's contention and
      backlog terms stay in its score."""

    utilization_cap = 0.95  # as predicted_ttft_s caps its contention term
    max_queued_per_replica = 1.0  # waiting requests per replica beyond which a cache no longer excuses load
    balance_abs_threshold = 8.0  # requests per replica
    balance_rel_threshold = 1.5

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        if not request.prefix_hashes:
            return super().choose(request, candidates, view)
        low = min(self.load(view, z) for z in candidates)
        best, best_s = -1, float("inf")
        fallback, fallback_s = candidates[0], float("inf")
        for zone in candidates:  # nearest first: a tie keeps the nearer
            hit = self.expected_hit_tokens(request, view, zone)
            u = estimated_utilization(view, zone)
            predicted = self._score_s(request, view, zone, hit, u)
            if predicted < fallback_s - 1e-3:
                fallback, fallback_s = zone, predicted
            if u >= self.headroom_utilization and not (hit and self.cache_excuses(view, zone, low)):
                continue
            if predicted < best_s - 1e-3:
                best, best_s = zone, predicted
        choice = best if best >= 0 else fallback
        self.record(request, choice)
        return choice

    def latency_rows(self, request: Request, candidates: list[int], view: GridView) -> list[Row]:
        """`choose`'s terms: the cache-weighted score, and headroom or a cache that excuses its lack."""
        if not request.prefix_hashes:
            return super().latency_rows(request, candidates, view)
        low = min(self.load(view, z) for z in candidates)
        rows = []
        for zone in candidates:
            hit = self.expected_hit_tokens(request, view, zone)
            u = estimated_utilization(view, zone)
            score = self._score_s(request, view, zone, hit, u)
            headroom = u < self.headroom_utilization
            excused = bool(hit) and not headroom and self.cache_excuses(view, zone, low)
            terms = latency_terms(request, view, zone, self.stale_after_s)
            cache_s = predicted_ttft_s(request, view, zone, self.stale_after_s) - score
            terms |= {
                "hit_tokens": float(hit),
                "cache_s": cache_s,
                "headroom": float(headroom),
                "cache_excuses_load": float(excused),
                "queue_allows": float(self.queue_allows(view, zone)),
                "load": self.load(view, zone),
            }
            rows.append(Row(zone, terms, score, headroom or excused))
        return rows

    def score_s(self, request: Request, view: GridView, zone: int) -> float:
        """Predicted client TTFT at `zone`, less the prefill its expected hit saves, weighted by load."""
        hit = self.expected_hit_tokens(request, view, zone) if request.prefix_hashes else 0
        return self._score_s(request, view, zone, hit, estimated_utilization(view, zone))

    def _score_s(self, request: Request, view: GridView, zone: int, hit: int, u: float) -> float:
        predicted = predicted_ttft_s(request, view, zone, self.stale_after_s)
        if hit:
            predicted -= hit * view.zones[zone].prefill_s_per_token / (1.0 - min(u, self.utilization_cap))
        return predicted

    @staticmethod
    def load(view: GridView, zone: int) -> float:
        """Outstanding requests per replica as this router can tell: reported, plus its sends since."""
        z = view.zones[zone]
        return (z.outstanding + z.sent_since_report) / z.replicas

    def queue_allows(self, view: GridView, zone: int) -> bool:
        """The zone's reported queue is short. (Not counting this router's sends since the report: most
        start at once, and with 2 s old reports counting them shut busy zones out of their own
        conversations.)"""
        z = view.zones[zone]
        return z.waiting < self.max_queued_per_replica * z.replicas

    def cache_excuses(self, view: GridView, zone: int, low: float) -> bool:
        """A hit at `zone` excuses its utilization: a short queue, and a load within the balance
        thresholds of `low`, the least loaded candidate's."""
        if not self.queue_allows(view, zone):
            return False
        load = self.load(view, zone)
        return load - low <= self.balance_abs_threshold or load <= self.balance_rel_threshold * low


class PrefixAware(CacheAware):
    """SGLang's cache-aware routing, across regions: the zone with the longest believed prefix match
    when it covers more than `cache_threshold` of the prompt and the grid is balanced; otherwise the
    lowest cache-adjusted predicted TTFT (`CacheAware`). Balanced, as SGLang's router tests it: the
    busiest and the idlest candidate (outstanding per replica, the router's own sends included) differ
    by at most `balance_abs_threshold` or by a ratio of at most `balance_rel_threshold`. A zone whose
    queue is over `CacheAware`'s guard is never chosen for its cache alone."""

    name = "prefix_aware"
    cache_threshold = 0.5  # SGLang router's --cache-threshold default
    balance_abs_threshold = 4.0  # requests per replica; SGLang's --balance-abs-threshold default is 32 per
    # worker, but the shortcut skips the score, and at 32 (or 8) the zone nearest a regional peak did
    # 1.4-1.5x the mean work (RESULTS.md, issue 16)
    balance_rel_threshold = 1.5  # its --balance-rel-threshold default is 1.0001 for one machine's GPUs; a
    # zone of several replicas reports coarser load, so a 50% spread still counts as balanced here

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        if not request.prefix_hashes or len(candidates) == 1:
            return super().choose(request, candidates, view)
        loads = [self.load(view, z) for z in candidates]
        high, low = max(loads), min(loads)
        balanced = high - low <= self.balance_abs_threshold or high <= self.balance_rel_threshold * low
        if balanced:
            best, best_hit = -1, 0
            for zone in candidates:  # nearest first: a tie keeps the nearer
                hit = self.expected_hit_tokens(request, view, zone)
                if hit > best_hit and self.queue_allows(view, zone):
                    best, best_hit = zone, hit
            if best >= 0 and best_hit > self.cache_threshold * request.prompt_tokens:
                self.record(request, best)
                return best
        return super().choose(request, candidates, view)

    def explain(self, request: Request, candidates: list[int], view: GridView) -> Explanation:
        if not request.prefix_hashes or len(candidates) == 1:
            return super().explain(request, candidates, view)
        rows = self.latency_rows(request, candidates, view)
        loads = [r.terms["load"] for r in rows]
        high, low = max(loads), min(loads)
        balanced = high - low <= self.balance_abs_threshold or high <= self.balance_rel_threshold * low
        threshold = self.cache_threshold * request.prompt_tokens
        any_ok = any(r.eligible for r in rows)

        def reason(zone: int, r: Row) -> str:
            if balanced and r.terms["hit_tokens"] > threshold and r.terms["queue_allows"]:
                hit = r.terms["hit_tokens"]
                return f"longest cached prefix ({hit:.0f} of {request.prompt_tokens} tokens), grid balanced"
            return describe_ttft(r.score, r.terms, any_ok)

        return ex.make(self.name, "longest_hit_or_lowest", rows, reason, balanced=float(balanced),
                       threshold_tokens=threshold)  # fmt: skip


class KvAware(CacheAware):
    """llm-d's and Dynamo's KV-aware routing, across regions: each zone's load report carries the unit
    hashes its prefix caches hold (`ZoneView.cached_units`), as old as the report; a zone's expected hit
    is the prompt's leading units in it, scored as `CacheAware` scores hits, so load still decides
    where no cache makes the difference. It keeps no record of its own: what a zone evicted or lost in
    a restart is gone at its next report."""

    name = "kv_aware"
    reads_cached_units = True  # drivers take the summaries (a copy per report when reports age) only for it

    def expected_hit_tokens(self, request: Request, view: GridView, zone: int) -> int:
        summary = view.zones[zone].cached_units
        hashes = request.prefix_hashes
        if not summary or not hashes:
            return 0
        unit_tokens = request.prefix_block_tokens
        limit = min(len(hashes), (request.prompt_tokens - 1) // unit_tokens)  # the last prompt token is computed
        return held_units(hashes, limit, summary) * unit_tokens

    def record(self, request: Request, zone: int) -> None:
        """Nothing to record: the zones' reports say what they hold."""


class LatencyAwareNoCache(LatencyAware):
    """`latency_aware` without its cache term: it predicts every prompt's full prefill everywhere."""

    name = "latency_aware_no_cache"

    def expected_hit_tokens(self, request: Request, view: GridView, zone: int) -> int:
        return 0

    def record(self, request: Request, zone: int) -> None:
        """Nothing to learn: it ignores caches."""
