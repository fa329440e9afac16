"""One bench run (scenario × policy × seed × load) as a plain function, and its Ray fan-out.

Common random numbers: the simulator draws arrivals and sizes from `default_rng(seed)` and network
jitter from its own stream `default_rng([seed, 1])`; the policy's RNG is separate (seeded by
`make_policy`). So for one seed every policy faces the same requests at the same times with the same
jitter, and differences between policies are paired (tests/bench/test_crn.py checks it).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grid.bench.cache_metrics import cache_bound_sink, cache_figures
from grid.dispatch.sinks import Sink
from grid.economics import cost_usd, gpu_hours
from grid.errors import GridInputError
from grid.routing.tariff import local_hour, price_usd_per_gpu_hour
from grid.scenario import load_scenario
from grid.stats import _LOG_BASE, _V_MIN_S

UTILIZATION_SAMPLE_S = 10.0


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    overrides: tuple[tuple[str, Any], ...]
    policy: str
    seed: int
    load: float  # multiple of the scenario's nominal rate (Simulation's rate_scale)
    duration_s: float | None
    autoscaler: str | None = None  # None: the scenario's (`--autoscalers` compares several)

    @property
    def label(self) -> str:
        """What the run is compared as: its routing policy, and its autoscaler when one was chosen."""
        return self.policy if self.autoscaler is None else f"{self.policy}+{self.autoscaler}"


class UtilizationSampler(Sink):
    """Samples the zones' reported utilization, as the router sees it, at the first arrival every
    `every_s` of simulated time: a utilization time series from the run's own events."""

    def __init__(self, view, every_s: float) -> None:
        self.view = view
        self.every_s = every_s
        self.next_s = 0.0
        self.samples: list[list[float]] = []  # [t, utilization of each zone (NaN if down)]

    def arrived(self, request, now_s: float) -> None:
        if now_s >= self.next_s:
            self.samples.append([now_s] + [z.utilization if z.up else math.nan for z in self.view.zones])
            self.next_s = now_s + self.every_s


def ttft_histogram(stats) -> tuple[list[int], list[int]]:
    """The run's TTFT histogram over all requests: (bucket indices, counts), nonzero only."""
    counts = stats.counts("ttft_s", slice(None), slice(None))
    nonzero = np.nonzero(counts)[0]
    return nonzero.tolist(), counts[nonzero].tolist()


def bucket_mid_s(index: np.ndarray | list[int]) -> np.ndarray:
    """Geometric midpoint of histogram buckets (1% wide: within 0.5% of any value in them)."""
    return _V_MIN_S * np.exp(_LOG_BASE * (np.asarray(index, dtype=float) + 0.5))


def usage_cost_usd_per_1m(scenario, report: dict, duration_s: float) -> float:
    """What the GPU-time a run used costs at each region's time-of-use tariff, per 1M output tokens.

    The report's cost is the provisioned fleet (the same for every router); this one charges only
    used capacity (zone utilization × GPUs × duration) at the tariff's mean over the run's local hours
    (sampled every 10 min), the bill a pay-per-use contract would send — which routing can change."""
    tokens = report["grid"]["output_tokens_per_s"] * duration_s
    if not tokens:
        return math.nan
    steps = np.arange(0.0, duration_s, 600.0) + min(300.0, duration_s / 2)
    usd = 0.0
    for zone in report["zones"]:
        region = scenario.regions[zone["region"]]
        gpus = scenario.zones[zone["name"]].replicas * scenario.zones[zone["name"]].gpus_per_replica
        start = scenario.demand.start_utc
        hours = [local_hour(start, t, region.tz) for t in steps]
        price = np.mean([price_usd_per_gpu_hour(region.price_usd_per_gpu_hour, h) for h in hours])
        usd += cost_usd(gpu_hours((zone["utilization"] or 0.0) * gpus, duration_s), price)
    return usd / (tokens / 1e6)


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Simulate one run; returns the report dict plus the TTFT histogram, utilization series and cache
    figures (`grid.bench.cache_metrics`)."""
    from grid.sim.simulator import Simulation

    scenario = load_scenario(spec.scenario, dict(spec.overrides))
    sim = Simulation(
        scenario,
        policy=spec.policy,
        seed=spec.seed,
        duration_s=spec.duration_s,
        rate_scale=spec.load,
        autoscaler=spec.autoscaler,
    )
    sampler = UtilizationSampler(sim.view, UTILIZATION_SAMPLE_S)
    bound = cache_bound_sink(scenario)
    sim.sinks += [sampler, bound]
    report = sim.run().to_dict()
    report["meta"]["policy"] = spec.label
    idx, counts = ttft_histogram(sim.stats)
    total = sum(counts)
    mean_ttft = float(np.dot(bucket_mid_s(idx), counts) / total) if total else math.nan
    return {
        "policy": spec.label,
        "seed": spec.seed,
        "load": spec.load,
        "report": report,
        "ttft_hist": {"bucket": idx, "count": counts},
        "ttft_mean_s": mean_ttft,
        "usage_usd_per_1m_output_tokens": usage_cost_usd_per_1m(scenario, report, sim.duration_s),
        "utilization_series": {"zones": [z.zone_id for z in sim.view.zones], "samples": sampler.samples},
        "cache": cache_figures(scenario, sim.world.zone_ids, sim.stats, report, bound),
    }


def _repo_paths() -> list[str]:
    root = str(Path(__file__).resolve().parents[2])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([root, os.getcwd(), *extra]))


def _init_ray(ray_address: str | None, num_cpus: int | None) -> None:
    import ray

    if ray_address:
        runtime_env = {"working_dir": os.getcwd(), "excludes": [".venv", ".git", "*.png", "results.json"]}
        ray.init(address=ray_address, runtime_env=runtime_env, log_to_driver=False)
    else:
        env = {"PYTHONPATH": os.pathsep.join(_repo_paths())}
        cpus = num_cpus or os.cpu_count()
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False)


@contextmanager
def ray_session(ray_address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of a block: all local cores (or `num_cpus` of them), or the cluster at
    `ray_address`. Nested sessions and `run_all` calls inside reuse it, so a caller that fans out
    several rounds (the capacity planner) pays Ray's start-up once."""
    import ray

    if ray.is_initialized():
        yield
        return
    _init_ray(ray_address, num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


def run_all(
    specs: list[Any],
    ray_address: str | None = None,
    progress: bool = True,
    *,
    fn: Callable[[Any], dict[str, Any]] = run_one,
    desc: str = "bench",
    unit: str = "run",
    on_result: Callable[[int, dict[str, Any]], None] | None = None,
    num_cpus: int | None = None,
) -> list[dict[str, Any]]:
    """Run `fn(spec)` for every spec as a Ray task (one CPU each) on all local cores (or `num_cpus`),
    or on the cluster at `ray_address`; results in the order of `specs`. `on_result(i, result)` is
    called in the driver as each finishes (to cache it, say). `fn` defaults to one bench run."""
    import ray
    from tqdm import tqdm

    if not specs:
        return []
    with ray_session(ray_address, num_cpus):
        task = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = [task.remote(spec) for spec in specs]
        position = {ref: i for i, ref in enumerate(refs)}
        results: list[dict[str, Any] | None] = [None] * len(refs)
        pending = list(refs)
        with tqdm(total=len(refs), unit=unit, desc=desc, disable=not progress, file=sys.stderr) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        results[position[ref]] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else None
                        if isinstance(cause, GridInputError):
                            raise GridInputError(str(cause)) from None
                        raise
                    if on_result is not None:
                        on_result(position[ref], results[position[ref]])
                    bar.update(1)
        return results  # type: ignore[return-value]
