"""Verification of a plan by simulation: each contingency of a replica vector simulated at the peak
over several seeds (through the cached point runner), scored by its slack against the SLO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CaseResult:
    name: str
    down: str | None
    ok: bool
    slack: float  # min over seeds and SLO terms of the normalized margin (< 0: violated)
    worst: dict[str, Any]  # the worst seed's figures
    busiest_zone: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Verifier:
    """Simulates contingencies of a replica vector at the peak, through the cached point runner."""

    def __init__(self, raw, scenario, base_overrides, slo, attainment, policy, seeds, duration_s, cache, ray_address,
                 progress) -> None:  # fmt: skip
        self.raw, self.scenario, self.base_overrides = raw, scenario, base_overrides
        self.slo, self.attainment = slo, attainment
        self.policy, self.seeds, self.duration_s = policy, seeds, duration_s
        self.cache, self.ray_address, self.progress = cache, ray_address, progress
        self.runs = 0

    def overrides(self, replicas: dict[str, int], down: str | None) -> list[tuple[str, Any]]:
        out = list(self.base_overrides)
        for zone_id, n in replicas.items():
            zero = down is not None and self.scenario.zones[zone_id].region == down
            out.append((f"zones.{zone_id}.replicas", 0 if zero else int(n)))
        return out

    def check(self, replicas: dict[str, int], cases: list[tuple[str, str | None]]) -> list[CaseResult]:
        from grid.capacity.point_runs import make_spec, run_cached

        specs = [
            make_spec(self.raw, self.overrides(replicas, down), self.policy, seed, self.duration_s)
            for _, down in cases
            for seed in range(self.seeds)
        ]
        results, computed = run_cached(specs, self.cache, self.ray_address, self.progress, "plan: simulating")
        self.runs += computed
        out = []
        for k, (name, down) in enumerate(cases):
            group = results[k * self.seeds : (k + 1) * self.seeds]
            scored = [(self._slack(r), r) for r in group]
            slack, worst = min(scored, key=lambda item: item[0])
            zones = {z: v for z, v in worst["zones"].items() if v["replicas"] and v["utilization"] is not None}
            busiest = max(zones, key=lambda z: zones[z]["utilization"]) if zones else None
            figures = dict(worst["metrics"]) | {
                "seed": worst["seed"],
                "zone_utilization": {z: round(v["utilization"], 4) for z, v in zones.items()},
            }
            out.append(CaseResult(name, down, slack >= 0, slack, figures, busiest))
        return out

    def _slack(self, run: dict[str, Any]) -> float:
        m = run["metrics"]
        terms = []
        for key, bound in self.slo.items():
            value = m.get(f"{key}_s")
            terms.append(-1.0 if value is None else (bound - value) / bound)
        att = m["slo_attainment"]
        terms.append(-1.0 if att is None else (att - self.attainment) / max(1e-9, 1.0 - self.attainment))
        return min(terms)


def first_broken(verifier: Verifier, replicas: dict[str, int], results: list[CaseResult], region: str):
    """Simulate `replicas` under the contingencies where `region` is up, tightest first; the first
    that misses the SLO, or None if all hold."""
    for case in sorted((r for r in results if r.down != region), key=lambda r: r.slack):
        trial = verifier.check(replicas, [(case.name, case.down)])[0]
        if not trial.ok:
            return trial
    return None


def minimality_record(zone: str, replicas, fewer, broken: CaseResult) -> dict[str, Any]:
    return {
        "zone": zone,
        "replicas": replicas[zone],
        "with_one_fewer": fewer[zone],
        "contingency": broken.name,
        "slack": broken.slack,
        "figures": broken.worst,
        "shown": True,
    }
