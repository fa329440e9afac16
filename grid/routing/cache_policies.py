"""Cache-aware routing: KV-cache locality first, load second, across regions (issue 16).

A prompt whose prefix a zone holds in its prefix cache skips the prefill of those tokens there. Two
ways to know where prefixes are, as today's routers do:
- `prefix_aware`: the router's own record of what it sent where (`PrefixIndex`; SGLang's cache-aware
  router), no zone reports needed;
- `kv_aware`: the zones' own account of their caches, in their load reports (llm-d's and Dynamo's
  KV-event scorers), as stale as every other reported signal.
Both score a zone by `latency_aware`'s predicted client TTFT minus the prefill its expected hit
saves (`LatencyAware.score_s`, which `latency_aware` itself uses with the router's own record), so a
long cached prefix is worth crossing a region for only when the saved prefill outweighs the extra
round trip (SkyWalker's cross-region argument). Requests without prefix information are routed
exactly as by `latency_aware`.
"""

from __future__ import annotations

from grid.routing.policies import LatencyAware, estimated_utilization
from grid.routing.view import GridView
from grid.serving.request import Request


class PrefixAware(LatencyAware):
    """SGLang's cache-aware routing, across regions: the zone with the longest believed prefix match
    when it covers more than `cache_threshold` of the prompt and the grid is balanced; otherwise the
    lowest cache-adjusted predicted TTFT. Balanced, as SGLang's router tests it: the busiest and the
    idlest candidate (outstanding per replica, the router's own sends included) differ by at most
    `balance_abs_threshold` or by a ratio of at most `balance_rel_threshold`. A zone without headroom
    (`latency_aware`'s rule) is never chosen for its cache alone."""

    name = "prefix_aware"
    cache_threshold = 0.5  # SGLang router's --cache-threshold default
    balance_abs_threshold = 32.0  # its --balance-abs-threshold default (requests per worker)
    balance_rel_threshold = 1.5  # its --balance-rel-threshold default is 1.0001 for one machine's GPUs; a
    # zone of several replicas reports coarser load, so a 50% spread still counts as balanced here

    def choose(self, request: Request, candidates: list[int], view: GridView) -> int:
        if not request.prefix_hashes or len(candidates) == 1:
            return super().choose(request, candidates, view)
        zones = view.zones
        loads = [(zones[z].outstanding + zones[z].sent_since_report) / zones[z].replicas for z in candidates]
        high, low = max(loads), min(loads)
        balanced = high - low <= self.balance_abs_threshold or high <= self.balance_rel_threshold * low
        if balanced:
            best, best_hit = -1, 0
            for zone in candidates:  # nearest first: a tie keeps the nearer
                hit = self.expected_hit_tokens(request, view, zone)
                if hit > best_hit and estimated_utilization(view, zone) < self.headroom_utilization:
                    best, best_hit = zone, hit
            if best >= 0 and best_hit > self.cache_threshold * request.prompt_tokens:
                self.record(request, best)
                return best
        return super().choose(request, candidates, view)
