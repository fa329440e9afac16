"""One simulation point (the merged scenario plus overrides, a policy, a seed, a duration) and how it
is run: its cache key, the simulation itself as a Ray task, and the cache that lets a sweep or a plan
compute only the points it has not run before."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grid.errors import GridInputError
from grid.scenario import set_path, validate_scenario

CACHE_VERSION = 2  # 2: the simulator retries (results with faults or full queues changed)


@dataclass(frozen=True)
class PointSpec:
    """One simulation: the merged scenario mapping plus overrides, a policy, a seed, a duration."""

    raw: dict[str, Any] = field(repr=False, hash=False, compare=False)
    overrides: tuple[tuple[str, Any], ...]
    policy: str | None
    seed: int
    duration_s: float
    key: str = ""


def point_key(raw: dict[str, Any], overrides, policy: str | None, seed: int, duration_s: float) -> str:
    """Cache key: a hash of the merged scenario (so a change in a base preset counts), the overrides
    (order-independent), the policy, the seed and the duration."""
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "scenario": raw,
            "overrides": sorted([str(p), v] for p, v in overrides),
            "policy": policy,
            "seed": seed,
            "duration_s": float(duration_s),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def make_spec(raw, overrides, policy, seed, duration_s) -> PointSpec:
    overrides = tuple((str(p), v) for p, v in overrides)
    return PointSpec(raw, overrides, policy, seed, duration_s, point_key(raw, overrides, policy, seed, duration_s))


def scenario_for(spec: PointSpec):
    raw = copy.deepcopy(spec.raw)
    for path, value in spec.overrides:
        set_path(raw, path, value)
    return validate_scenario(raw, {})


def run_point(spec: PointSpec) -> dict[str, Any]:
    """Simulate one point (a Ray task); returns the grid figures, per-zone figures and CPU time."""
    from grid.sim.simulator import Simulation

    cpu0, wall0 = time.process_time(), time.perf_counter()
    scenario = scenario_for(spec)
    report = Simulation(scenario, policy=spec.policy, seed=spec.seed, duration_s=spec.duration_s).run().to_dict()
    g = report["grid"]
    metrics = {
        "slo_attainment": g["slo_attainment"],
        "ttft_p50_s": g["ttft_s"]["p50"],
        "ttft_p90_s": g["ttft_s"]["p90"],
        "ttft_p99_s": g["ttft_s"]["p99"],
        "tpot_p99_s": g["tpot_s"]["p99"],
        "e2e_p99_s": g["e2e_s"]["p99"],
        "throughput_rps": g["throughput_rps"],
        "offered_load": g["offered_load"],
        "utilization": g["utilization"],
        "cost_usd_per_hour": g["cost_usd_per_hour"],
        "cost_usd": g["cost_usd"],  # the fleet paid for over the run at the tariff (autoscaled or not)
        "replica_hours": g["replica_hours"] + g["spot_replica_hours"],
        "arrivals": g["arrivals"],
        "completed": g["completed"],
        "rejected": g["rejected"],
        "failed": g["failed"],
    }
    for metric in ("ttft", "tpot", "e2e"):
        for q in ("p50", "p90", "p99"):
            metrics[f"{metric}_{q}_s"] = g[f"{metric}_s"][q]
    zones = {
        z["name"]: {
            "replicas": z["replicas"],
            "utilization": _clean(z["utilization"]),
            "ttft_p99_s": z["ttft_s"]["p99"],
            "slo_attainment": _clean(z["slo_attainment"]),
        }
        for z in report["zones"]
    }
    return {
        "key": spec.key,
        "overrides": [list(o) for o in spec.overrides],
        "policy": report["meta"]["policy"],
        "seed": spec.seed,
        "duration_s": spec.duration_s,
        "metrics": {k: _clean(v) for k, v in metrics.items()},
        "zones": zones,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


class PointCache:
    """Finished runs as DIR/<key>.json, written atomically as each one returns; in memory only when
    `directory` is None."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.memory: dict[str, dict[str, Any]] = {}
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GridInputError(f"{directory}: cannot create the cache directory: {exc.strerror}") from None

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self.memory or self.directory is None:
            return self.memory.get(key)
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # missing or torn: compute it again

    def put(self, key: str, result: dict[str, Any]) -> None:
        self.memory[key] = result
        if self.directory is None:
            return
        tmp = self.directory / f".{key}.tmp"
        tmp.write_text(json.dumps(result, default=float))
        tmp.replace(self.directory / f"{key}.json")


def run_cached(
    specs: list[PointSpec],
    cache: PointCache | None,
    ray_address: str | None = None,
    progress: bool = False,
    desc: str = "sweep",
    num_cpus: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Results for every spec, from the cache where present; returns (results, how many computed)."""
    from grid.bench.runner import run_all

    results: list[dict[str, Any] | None] = [cache.get(s.key) if cache else None for s in specs]
    missing = [i for i, r in enumerate(results) if r is None]
    todo = list(dict.fromkeys(specs[i].key for i in missing))  # identical points run once
    by_key = {specs[i].key: specs[i] for i in missing}

    def store(i: int, result: dict[str, Any]) -> None:
        if cache is not None:
            cache.put(todo[i], result)

    computed = run_all(
        [by_key[k] for k in todo],
        ray_address=ray_address,
        progress=progress,
        fn=run_point,
        desc=desc,
        unit="point",
        on_result=store,
        num_cpus=num_cpus,
    )
    fresh = dict(zip(todo, computed, strict=True))
    return [r if r is not None else fresh[specs[i].key] for i, r in enumerate(results)], len(todo)
