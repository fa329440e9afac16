"""What a bench run's prefix caches did (issue 16): hits, prefill saved, the single-global-cache bound, balance.

The bound is computed from the run's own arrivals (`CacheBoundSink`, `grid.demand.reuse`), so with
common random numbers every policy of a seed is measured against the same bound. Balance is the
busiest zone's utilization over the grid's mean, two ways: the report's utilization counts each
admitted prompt's whole prefill as work (a zone cannot know at admission what its replicas hold), so
where most prompt tokens hit it overstates the zones holding the caches; the work-done utilization
takes the prefill served from cache back out.
"""

from __future__ import annotations

import math
from typing import Any

from grid.demand.reuse import GlobalCacheBound
from grid.dispatch.limits import prompt_fits
from grid.dispatch.sinks import Sink
from grid.serving.capacity import prefill_step_base_s
from grid.serving.request import Request


class CacheBoundSink(Sink):
    """Feeds every request that fits the context (the others never reach a cache) into the bound."""

    def __init__(self, context_tokens: int, engine_block_tokens: int) -> None:
        self.context_tokens = context_tokens
        self.bound = GlobalCacheBound(engine_block_tokens)

    def arrived(self, request: Request, now_s: float) -> None:
        if prompt_fits(request.prompt_tokens, self.context_tokens):
            self.bound.add(request.prompt_tokens, request.prefix_hashes, request.prefix_block_tokens)


def cache_bound_sink(scenario) -> CacheBoundSink:
    """The sink for a scenario: hits come in whole blocks of its engines' KV cache (the smallest block)."""
    blocks = [scenario.gpus[zone.gpu].block_tokens for zone in scenario.zones.values()] or [1]
    return CacheBoundSink(scenario.model.context_tokens, min(blocks))


def cache_figures(scenario, zone_ids: list[str], stats, report: dict, sink: CacheBoundSink) -> dict[str, Any]:
    """The run's cache figures: prompt and hit tokens of completed requests, the bound, per-zone
    utilization with cached prefill taken out, and both balance ratios (NaN without utilization)."""
    cached_by_zone = stats.cached_tokens.sum(axis=0).tolist()
    duration_s = report["meta"]["duration_s"]
    done_work, replica_s = [], []
    for z, zone_id in enumerate(zone_ids):
        spec = scenario.zones[zone_id]
        profile = scenario.gpus[spec.gpu]
        per_token_s = profile.prefill_per_token_s + prefill_step_base_s(profile) / profile.max_num_batched_tokens
        zone_replica_s = spec.replicas * duration_s
        admitted = report["zones"][z]["utilization"]
        work = (admitted or 0.0) * zone_replica_s - cached_by_zone[z] * per_token_s  # Zone.work_of, less the hits
        done_work.append(max(0.0, work))
        replica_s.append(zone_replica_s)
    utilization = [w / r for w, r in zip(done_work, replica_s, strict=True) if r > 0]
    mean_done = sum(done_work) / sum(replica_s) if sum(replica_s) else math.nan
    admitted = [z["utilization"] for z in report["zones"] if z["replicas"] and z["utilization"] is not None]
    mean_admitted = report["grid"]["utilization"]
    return {
        "prompt_tokens": int(stats.prompt_tokens.sum()),
        "hit_tokens": int(sum(cached_by_zone)),
        "bound_prompt_tokens": sink.bound.prompt_tokens,
        "bound_hit_tokens": sink.bound.hit_tokens,
        "zone_utilization_done": utilization,
        "busiest_over_mean_admitted": max(admitted) / mean_admitted if admitted and mean_admitted else math.nan,
        "busiest_over_mean_done": max(utilization) / mean_done if utilization and mean_done else math.nan,
    }


def cache_metrics(cache: dict[str, Any] | None) -> dict[str, float]:
    """Per-run bench metrics from `cache_figures` (NaN for a workload without prefix information)."""
    nan = math.nan
    if not cache or not cache["bound_hit_tokens"]:
        keys = ("cache_hit_pct", "bound_hit_pct", "hit_of_bound_pct", "prefill_saved_mtok")
        return {**dict.fromkeys(keys, nan), "busiest_admitted": nan, "busiest_done": nan}
    hit = cache["hit_tokens"] / cache["prompt_tokens"] if cache["prompt_tokens"] else nan
    bound = cache["bound_hit_tokens"] / cache["bound_prompt_tokens"]
    return {
        "cache_hit_pct": 100 * hit,
        "bound_hit_pct": 100 * bound,
        "hit_of_bound_pct": 100 * hit / bound,
        "prefill_saved_mtok": cache["hit_tokens"] / 1e6,
        "busiest_admitted": cache["busiest_over_mean_admitted"],
        "busiest_done": cache["busiest_over_mean_done"],
    }
