"""A zone's time to first token as a function of its load, measured on the serving model itself.

The fluid LP bound prices a zone at its no-load TTFT; a batching engine at 80% load makes a new
prompt wait for decode steps, share prefill batches and queue. `zone_ttft_curve` measures that cost:
it drives one `Zone` (the same code both drivers run) with Poisson arrivals of the scenario's request
sizes at a grid of utilizations and records the mean zone-side TTFT (admission to first token,
network excluded). Poisson arrivals at a fixed rate are what a static split of demand sends a zone,
so the curve is the zone's latency under the best *static* assignment; a router that reads live
load sends smoother traffic and can do better (see `grid.bench.lp_bound.load_aware_reference`).
"""

from __future__ import annotations

import functools

import numpy as np

from grid.demand.arrivals import size_sampler
from grid.scenario import GpuProfile, Sizes
from grid.serving.capacity import replica_capacity_rps
from grid.serving.request import Request
from grid.serving.zone import FIRST_TOKEN, INF, Zone

# Dense where the curve bends (it is nearly flat below half load and steep near saturation).
UTILIZATIONS = (0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
REQUESTS_PER_REPLICA = 12000  # per utilization point; the first 10% warm the zone up and are not counted


@functools.lru_cache(maxsize=64)
def zone_ttft_curve(
    profile: GpuProfile,
    replicas: int,
    sizes: Sizes,
    mean_prompt_tokens: float,
    mean_output_tokens: float,
    slow_factor: float = 1.0,
    seed: int = 0,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(utilizations, mean zone TTFT in s at each) for `replicas` engines of `profile`.

    Utilization is offered load over saturated capacity at mean sizes (`replica_capacity_rps`,
    divided by `slow_factor`): the same capacity the LP's zone constraint uses."""
    capacity_rps = replicas * replica_capacity_rps(profile, mean_prompt_tokens, mean_output_tokens) / slow_factor
    # Common random numbers: every point replays the same requests with gaps scaled to its rate, so
    # the curve's points differ by load alone and the curve comes out smooth.
    rng = np.random.default_rng(seed)
    n = REQUESTS_PER_REPLICA * replicas
    unit_gaps = rng.exponential(1.0, n)
    prompts, outputs = size_sampler(sizes)(rng, n)
    means = []
    for utilization in UTILIZATIONS:
        arrivals_s = np.cumsum(unit_gaps / (utilization * capacity_rps))
        means.append(_mean_ttft_s(profile, replicas, slow_factor, arrivals_s, prompts, outputs, warmup=n // 10))
    return UTILIZATIONS, tuple(means)


def _mean_ttft_s(
    profile: GpuProfile,
    replicas: int,
    slow_factor: float,
    arrivals_s: np.ndarray,
    prompts: np.ndarray,
    outputs: np.ndarray,
    warmup: int,
) -> float:
    zone = Zone(profile, replicas, max_queue=len(arrivals_s))  # unbounded: a rejection would hide a wait
    zone.set_slow_factor(slow_factor, 0.0)
    ttfts_s: list[float] = []

    def run_until(t: float) -> None:
        while (next_s := zone.next_event_time()) <= t and next_s < INF:
            for kind, request in zone.advance(next_s):
                if kind == FIRST_TOKEN and request.id >= warmup:
                    ttfts_s.append(request.first_token_s - request.admit_s)

    for i, t in enumerate(arrivals_s.tolist()):
        run_until(t)
        zone.admit(Request(i, 0, int(prompts[i]), int(outputs[i]), t), t)
    run_until(INF)
    return sum(ttfts_s) / len(ttfts_s)
