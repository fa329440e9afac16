"""One load, two clocks: run a scenario live (Ray + HTTP) and simulated, and compare.

Both runs see the same requests: the arrival schedule is the scenario's own generator
(`grid.demand.plan.demand_plan`: Poisson arrivals, or sessions with their prefix hashes) with
`rng = default_rng(seed)`, exactly as `Simulation.run` draws it. The live run replays it through HTTP
(grid.live.loadgen, its own process, which turns prefix hashes into token ids that share as they do);
the gateway's `RunStats` over [0, duration) becomes the live report (requests still running at the
end count as in flight, as in the simulator). Both read the scenario's report interval the same way
(0: fresh reports, pushed by the zone actors live).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from grid.demand.arrivals import PrefixedChunk
from grid.demand.plan import demand_plan
from grid.dispatch.sinks import Sink
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
from grid.report import Report, ZoneFigures, build_report, format_table
from grid.scenario import Scenario
from grid.sim.simulator import Simulation


def arrival_schedule(scenario: Scenario, duration_s: float, rate_scale: float, seed: int) -> Schedule:
    """The simulator's arrivals for this scenario, rate and seed: Poisson demand, or sessions (each
    turn with its prefix hashes). Traces are not replayed live."""
    if scenario.demand.trace is not None:  # checked first: planning a trace reads it
        raise ValueError("live runs replay Poisson or session demand; this scenario replays a trace")
    plan = demand_plan(scenario, duration_s, rate_scale, seed)
    population_ids = list(scenario.populations)
    times, pops, prompts, outputs, hashes = [], [], [], [], []
    block = 0
    for chunk in plan.arrivals(np.random.default_rng(seed)):
        times += chunk.arrival_s.tolist()
        pops += [population_ids[p] for p in chunk.population.tolist()]
        prompts += chunk.prompt_tokens.tolist()
        outputs += chunk.output_tokens.tolist()
        if isinstance(chunk, PrefixedChunk):
            hashes += chunk.prefix_hashes
            block = chunk.block_tokens
    if plan.kind == "poisson":
        return Schedule(times, pops, prompts, outputs)
    return Schedule(times, pops, prompts, outputs, hashes, block)


@dataclass
class LiveResult:
    report: Report
    client: dict[str, Any]
    startup_s: float
    zone_reports: list[dict]  # each zone actor's load report once the clients are done
    hedges: dict[str, int] | None  # the gateway's hedge counts (None: the policy does not hedge)
    intake_s: dict[str, float] | None = None  # the gateway's own wait before handlers: mean, p99 (bucket bound)
    gateway_cpu_s: float = 0.0  # the gateway's event-loop thread's CPU time while the load ran


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
    sinks_at: Callable[[float], list[Sink]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> LiveResult:
    """Start Ray, the zone actors and the gateway; replay the schedule through HTTP; stop everything.
    `sinks_at(t_go_s)` gives sinks to attach as the load begins (at `t_go_s` of the gateway's clock);
    `progress(elapsed_s)` is called every 10 s of the run instead of the in-flight log line."""
    schedule = arrival_schedule(scenario, duration_s, rate_scale, seed)
    started = time.monotonic()
    grid = build_live_grid(
        with_policy_and_seed(scenario, policy, seed),
        GatewaySettings(timeline_on_start=False),
        stream_interval_s=stream_interval_s,
        num_cpus=2,
    )
    try:
        return run_async(
            _run_live(
                grid,
                scenario,
                schedule,
                duration_s,
                rate_scale,
                seed,
                stream_share,
                drain_s,
                started,
                log,
                sinks_at,
                progress,
            )  # fmt: skip
        )
    finally:
        grid.close()


async def _run_live(
    grid, scenario, schedule, duration_s, rate_scale, seed, stream_share, drain_s, started, log, sinks_at, progress
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
        cpu_go_s = time.thread_time()  # this coroutine runs on the gateway's event loop: its thread's CPU
        for sink in sinks_at(t_go) if sinks_at else ():
            gateway.sinks.add(sink)
        gateway.start_timeline()  # the scenario's t = 0 (autoscaling decisions, faults) is the load's
        load.go()
        while (left := t_go + duration_s - gateway.now()) > 0:
            elapsed_s = gateway.now() - t_go
            await asyncio.sleep(min(left, 10.0 * (1 + elapsed_s // 10.0) - elapsed_s))  # to the next 10 s mark
            if progress is not None:
                progress(gateway.now() - t_go)
            elif left > 10.0:
                log(f"  t={gateway.now() - t_go:4.0f} s · in flight {len(gateway.live)}")
        stats, in_flight = gateway.snapshot_stats()
        gateway_cpu_s = time.thread_time() - cpu_go_s
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
        if gateway.fleet.enabled or gateway.fleet.events:  # on the gateway's clock; the load began at t_go
            meta["scaling"] = {**gateway.fleet.meta(), "load_started_s": t_go}
        report = build_report(scenario, gateway.world, stats, figures, duration_s, meta, in_flight)
        return LiveResult(report, client, startup_s, zone_reports, hedges, intake, gateway_cpu_s)
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


def hit_rate_row(live: Report, sim: Report) -> tuple[str, float, float, float]:
    """(figure, live, simulated, live − sim) for the grid's prefix-cache hit rate (share of prompt tokens
    served from cache; NaN when no request completed)."""
    a = live.grid.extra.get("prefix_cache_hit_rate", math.nan)
    b = sim.grid.extra.get("prefix_cache_hit_rate", math.nan)
    return "cache hit rate", a, b, a - b


FIDELITY_TARGETS = {"p50": 0.10, "p90": None, "p99": 0.20}  # |live/sim − 1| allowed, per quantile
HIT_RATE_TARGET = 0.02  # |live − sim| allowed for the cache hit rate, as a share (2 points)


def fidelity_misses(live: Report, sim: Report, client: dict | None = None) -> list[str]:
    """The TTFT/E2E quantiles outside the fidelity targets (p50 within 10%, p99 within 20%), as the
    gateway measured them and, given the load generator's figures, as the client did; and the cache hit
    rate outside 2 points of the simulator's."""
    misses = []
    name, a, b, diff = hit_rate_row(live, sim)
    if a == a and b == b and not abs(diff) <= HIT_RATE_TARGET:
        misses.append(f"{name}: live {a:.1%} vs sim {b:.1%} ({diff * 100:+.1f} points, target ±{HIT_RATE_TARGET:.0%})")
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
    name, a, b, diff = hit_rate_row(live, sim)
    lines.append(f"{name:<18}{a * 100:>10.1f}%{'':>11}{b * 100:>9.1f}%{diff * 100:>+11.1f} points")
    lg, sg = live.grid, sim.grid
    lines.append(
        f"{'completed':<18}{lg.completed:>10}{sg.completed:>10}    "
        f"(rejected {lg.rejected}/{sg.rejected}, failed {lg.failed}/{sg.failed}, "
        f"in flight at end {live.totals['in_flight']}/{sim.totals['in_flight']})"
    )
    return "\n".join(lines)


def print_side_by_side(
    live: Report, sim: Report, client: dict | None = None, live_title: str = "LIVE", sim_title: str = "SIMULATED"
) -> None:
    """Both reports' tables, then the comparison (what `grid demo` and the fidelity benchmarks print)."""
    print(f"\n=== {live_title} ===")
    print(format_table(live))
    print(f"\n=== {sim_title} ===")
    print(format_table(sim))
    print("\n=== live vs simulated ===")
    print(format_comparison(live, sim, client))
