"""One load, two clocks: run a scenario live (Ray + HTTP) and simulated, and compare.

Both runs see the same requests: the arrival schedule is the scenario's own generator
(`DemandModel` + `poisson_arrivals` + `size_sampler`) with `rng = default_rng(seed)`, exactly as
`Simulation.run` draws it. The live run replays it through HTTP (grid.live.loadgen, its own process);
the gateway's `RunStats` over [0, duration) becomes the live report (requests still running at the
end count as in flight, as in the simulator). Both read the scenario's report interval the same way
(0: fresh reports, pushed by the zone actors live).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from grid.demand.arrivals import DemandModel, poisson_arrivals, size_sampler
from grid.live.gateway import GatewaySettings
from grid.live.loadgen import LoadProcess, Schedule
from grid.live.server import (
    DEFAULT_STREAM_INTERVAL_S,
    build_live_grid,
    free_port,
    run_async,
    uvicorn_server,
    wait_started,
)
from grid.report import Report, ZoneFigures, build_report
from grid.scenario import Scenario
from grid.sim.simulator import Simulation


def arrival_schedule(scenario: Scenario, duration_s: float, rate_scale: float, seed: int) -> Schedule:
    """The simulator's arrivals for this scenario, rate and seed (Poisson demand only)."""
    if scenario.demand.trace is not None:
        raise ValueError("live runs replay Poisson demand; this scenario replays a trace")
    demand = DemandModel(scenario.demand, scenario.populations)
    demand.mean_rate_rps *= rate_scale
    population_ids = list(scenario.populations)
    times, pops, prompts, outputs = [], [], [], []
    rng = np.random.default_rng(seed)
    for chunk in poisson_arrivals(demand, size_sampler(scenario.demand.sizes), duration_s, rng):
        times += chunk.arrival_s.tolist()
        pops += [population_ids[p] for p in chunk.population.tolist()]
        prompts += chunk.prompt_tokens.tolist()
        outputs += chunk.output_tokens.tolist()
    return Schedule(times, pops, prompts, outputs)


@dataclass
class LiveResult:
    report: Report
    client: dict[str, Any]
    startup_s: float
    zone_reports: list[dict]  # each zone actor's load report once the clients are done
    hedges: dict[str, int] | None  # the gateway's hedge counts (None: the policy does not hedge)
    intake_s: dict[str, float] | None = None  # the gateway's own wait before handlers: mean, p99 (bucket bound)


def run_live(
    scenario: Scenario,
    policy: str | None,
    duration_s: float,
    rate_scale: float,
    seed: int,
    stream_share: float = 1.0,
    drain_s: float = 20.0,
    stream_interval_s: float = DEFAULT_STREAM_INTERVAL_S,
    log=print,
) -> LiveResult:
    """Start Ray, the zone actors and the gateway; replay the schedule through HTTP; stop everything."""
    schedule = arrival_schedule(scenario, duration_s, rate_scale, seed)
    started = time.monotonic()
    grid = build_live_grid(
        with_policy_and_seed(scenario, policy, seed),
        GatewaySettings(),
        stream_interval_s=stream_interval_s,
        num_cpus=2,
    )
    try:
        return run_async(
            _run_live(grid, scenario, schedule, duration_s, rate_scale, seed, stream_share, drain_s, started, log)
        )
    finally:
        grid.close()


async def _run_live(
    grid, scenario, schedule, duration_s, rate_scale, seed, stream_share, drain_s, started, log
) -> LiveResult:
    port = free_port()
    server = uvicorn_server(grid.app, "127.0.0.1", port)
    server_task = asyncio.create_task(server.serve())
    try:
        await wait_started(server, server_task)
        gateway = grid.gateway
        load = LoadProcess(f"http://127.0.0.1:{port}", scenario.model.name, schedule, stream_share, drain_s, seed)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, load.start)
        startup_s = time.monotonic() - started
        log(
            f"live grid up in {startup_s:.1f} s ({len(gateway.links)} zone actors, gateway on 127.0.0.1:{port}); "
            f"sending {len(schedule)} requests over {duration_s:.0f} s"
        )
        gateway.reset_stats()
        before = await gateway.zone_figures()
        t_go = gateway.now()
        load.go()
        while (left := t_go + duration_s - gateway.now()) > 0:
            await asyncio.sleep(min(left, 10.0))
            if left > 10.0:
                log(f"  t={gateway.now() - t_go:4.0f} s · in flight {len(gateway.live)}")
        stats, in_flight = gateway.snapshot_stats()
        after = await gateway.zone_figures()
        client = await loop.run_in_executor(None, load.result, drain_s + 30.0)
        zone_reports = [await link.actor.report.remote() for link in gateway.links]
        hedges = dict(gateway.hedging.counts) if gateway.hedging is not None else None
        intake = histogram_summary(gateway.intake_histogram) if gateway.intake_histogram is not None else None
        figures = [
            ZoneFigures(a.work_s - b.work_s, a.area_queued - b.area_queued, a.area_in_system - b.area_in_system)
            for a, b in zip(after, before, strict=True)
        ]
        meta = {
            "clock": "live (wall clock)",
            "policy": getattr(gateway.policy, "name", "?"),
            "seed": seed,
            "rate_scale": rate_scale,
            "report_interval_s": gateway.report_interval_s,
        }
        report = build_report(scenario, gateway.world, stats, figures, duration_s, meta, in_flight)
        return LiveResult(report, client, startup_s, zone_reports, hedges, intake)
    finally:
        server.should_exit = True
        await server_task


def histogram_summary(histogram) -> dict[str, float]:
    """Mean and p99 (the upper bound of the bucket that holds it) of a prometheus_client Histogram."""
    buckets, total, count = [], 0.0, 0.0
    for sample in histogram.collect()[0].samples:
        if sample.name.endswith("_bucket"):
            buckets.append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_sum"):
            total = sample.value
        elif sample.name.endswith("_count"):
            count = sample.value
    p99 = next((bound for bound, cumulative in buckets if cumulative >= 0.99 * count), math.inf) if count else math.nan
    return {"mean": total / count if count else math.nan, "p99": p99, "count": count}


def with_policy_and_seed(scenario: Scenario, policy: str | None, seed: int) -> Scenario:
    """The scenario as one run of it: its policy (unless `policy` names another) and `seed`."""
    routing = scenario.routing if policy is None else scenario.routing.model_copy(update={"policy": policy})
    return scenario.model_copy(update={"routing": routing, "seed": seed})


def run_simulated(scenario: Scenario, policy: str | None, duration_s: float, rate_scale: float, seed: int) -> Report:
    sim = Simulation(scenario, policy, seed, duration_s, rate_scale)
    return sim.run()


def compare_rows(live: Report, sim: Report, client: dict | None = None) -> list[tuple[str, float, float, float, float]]:
    """(figure, gateway, client, simulated, gateway/sim − 1) for the grid's TTFT and E2E p50/p90/p99:
    the gateway's measure (from the request's first byte at the server), the load generator's own
    (`client`, `grid.live.loadgen`; NaN without one) and the simulator's."""
    rows = []
    client = client or {}
    for metric in ("ttft_s", "e2e_s"):
        for q in ("p50", "p90", "p99"):
            a = getattr(live.grid, metric).get(q, math.nan)
            c = client.get(f"client_{metric}", {}).get(q, math.nan)
            b = getattr(sim.grid, metric).get(q, math.nan)
            rows.append((f"{metric[:-2].upper()} {q}", a, c, b, a / b - 1.0 if b and b == b else math.nan))
    return rows


FIDELITY_TARGETS = {"p50": 0.10, "p90": None, "p99": 0.20}  # |live/sim − 1| allowed, per quantile


def fidelity_misses(live: Report, sim: Report, client: dict | None = None) -> list[str]:
    """The TTFT/E2E quantiles outside the fidelity targets (p50 within 10%, p99 within 20%), as the
    gateway measured them and, given the load generator's figures, as the client did."""
    misses = []
    for name, a, c, b, _ in compare_rows(live, sim, client):
        limit = FIDELITY_TARGETS[name.split()[-1]]
        if limit is None or b != b or not b:
            continue
        for where, value in (("gateway", a), ("client", c)):
            if where == "client" and client is None:
                continue
            rel = value / b - 1.0
            if not abs(rel) <= limit:
                misses.append(
                    f"{name} ({where}): live {value * 1000:.0f} ms vs sim {b * 1000:.0f} ms "
                    f"({rel * 100:+.1f}%, target ±{limit:.0%})"
                )
    return misses


def format_comparison(live: Report, sim: Report, client: dict | None = None) -> str:
    """Live (the gateway's measure, and the client's when given) beside simulated."""
    head = f"{'grid':<18}{'gateway ms':>11}{'client ms':>11}{'sim ms':>10}{'gateway vs sim':>16}{'client vs sim':>15}"
    lines = [head]
    for name, a, c, b, rel in compare_rows(live, sim, client):
        client_rel = c / b - 1.0 if b and b == b else math.nan
        ms = f"{name:<18}{a * 1000:>11.0f}{c * 1000:>11.0f}{b * 1000:>10.0f}"
        lines.append(f"{ms}{rel * 100:>+15.1f}%{client_rel * 100:>+14.1f}%")
    lg, sg = live.grid, sim.grid
    lines.append(
        f"{'completed':<18}{lg.completed:>10}{sg.completed:>10}    "
        f"(rejected {lg.rejected}/{sg.rejected}, failed {lg.failed}/{sg.failed}, "
        f"in flight at end {live.totals['in_flight']}/{sim.totals['in_flight']})"
    )
    return "\n".join(lines)
