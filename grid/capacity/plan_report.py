"""The result of `grid plan`: the `Plan` record, its JSON form, and the text report `grid plan` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grid.capacity.plan_inputs import Peak
from grid.capacity.plan_verification import CaseResult
from grid.scenario import Scenario


@dataclass
class Plan:
    scenario: str
    slo: dict[str, float]
    attainment: float
    contingency: str
    peak: Peak
    replicas: dict[str, int]
    fast_replicas: dict[str, int]
    lp_replicas: dict[str, float]
    cost_usd_per_hour: float
    fast_cost_usd_per_hour: float
    cases: list[CaseResult]
    binding: str | None
    binding_zone: str | None
    minimality: dict[str, Any] | None
    adjustments: list[str] = field(default_factory=list)
    seeds: int = 1
    duration_s: float = 0.0
    sim_runs: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("peak", "cases")}
        d["peak"] = {"t_s": self.peak.t_s, "utc": self.peak.utc.isoformat(), "total_rps": self.peak.total_rps}
        d["cases"] = [c.to_dict() for c in self.cases]
        return d


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def format_plan(plan: Plan, scenario: Scenario | None = None) -> str:
    slo = ", ".join(f"{k} ≤ {v:g} s" for k, v in plan.slo.items())
    lines = [
        f"plan for {plan.scenario}: {slo}, attainment ≥ {plan.attainment:.2%}, contingency {plan.contingency}",
        f"peak demand {plan.peak.total_rps:.0f} req/s at {plan.peak.utc:%Y-%m-%d %H:%M} UTC "
        f"(+{plan.peak.t_s / 3600:.1f} h), held for {plan.duration_s:g} s × {plan.seeds} seeds per contingency",
        "",
        f"{'zone':<16}{'region':<12}{'replicas':>9}{'fast model':>12}{'LP':>8}",
    ]
    regions = {}
    if scenario is not None:
        regions = {z: v.region for z, v in scenario.zones.items()}
    for zone, n in plan.replicas.items():
        mark = "  ← binding" if zone == plan.binding_zone else ""
        lines.append(
            f"{zone:<16}{regions.get(zone, ''):<12}{n:>9}{plan.fast_replicas[zone]:>12}"
            f"{plan.lp_replicas[zone]:>8.1f}{mark}"
        )
    lines += [
        f"{'total':<28}{sum(plan.replicas.values()):>9}{sum(plan.fast_replicas.values()):>12}",
        f"cost ${plan.cost_usd_per_hour:,.2f}/h (fast model alone: ${plan.fast_cost_usd_per_hour:,.2f}/h)",
        "",
        f"{'contingency (simulated)':<24}{'p99 TTFT':>10}{'p99 TPOT':>10}{'attainment':>12}{'busiest':>16}"
        f"{'util':>7}{'slack':>8}  result",
    ]
    for c in plan.cases:
        util = c.worst["zone_utilization"].get(c.busiest_zone) if c.busiest_zone else None
        lines.append(
            f"{c.name:<24}{fmt_ms(c.worst.get('ttft_p99_s')):>10}{fmt_ms(c.worst.get('tpot_p99_s')):>10}"
            f"{fmt_pct(c.worst.get('slo_attainment')):>12}{c.busiest_zone or '-':>16}"
            f"{'-' if util is None else f'{util:.0%}':>7}{c.slack:>+8.2f}  {'meets' if c.ok else 'MISSES'}"
        )
    lines.append("(worst seed of each contingency; slack = least normalized margin over the SLO terms)")
    lines.append("")
    lines.append(f"binding contingency: {plan.binding} (binding zone {plan.binding_zone})")
    m = plan.minimality
    if m and m.get("shown"):
        f = m["figures"]
        lines.append(
            f"minimal there: {m['zone']} at {m['with_one_fewer']} replicas instead of {m['replicas']} breaks the SLO "
            f"under {m['contingency']!r} in simulation (p99 TTFT {fmt_ms(f.get('ttft_p99_s'))}, attainment "
            f"{fmt_pct(f.get('slo_attainment'))}, seed {f.get('seed')})"
        )
    elif m:
        lines.append(f"minimality at {m.get('zone')} not shown within the step limit")
    for a in plan.adjustments:
        lines.append(f"adjusted: {a}")
    lines.append(f"{plan.sim_runs} simulations run")
    return "\n".join(lines)
