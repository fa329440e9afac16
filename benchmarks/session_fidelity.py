"""Fidelity of the live grid on sessions: one session scenario at ≤ 60% utilization, live and simulated.

Both runs see the same turns (the simulator's session draw for the seed: times, populations, sizes,
prefix hashes); live, each turn is a token-id prompt whose 16-token blocks share exactly as its hashes
do (grid.live.loadgen). Targets (issue 15): cache hit rate within 2 points of the simulator's, TTFT
p50 within 10%, p99 within 20%. Prints both tables, the comparison, the verdict and the load average.

`--answer-units` adds a simulator-only what-if: the hit rate if each turn also carried its answer's
hash units (cached when the turn finishes, as vLLM caches generated blocks), so the next turn could
reuse the answer it resends. Today's session draw hashes prompts only, in both clocks.

    .venv/bin/python benchmarks/session_fidelity.py                   # tests/live/sessions.yaml, 60 s
    .venv/bin/python benchmarks/session_fidelity.py --sim-only --answer-units --duration-s 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.demand.arrivals import PrefixedChunk  # noqa: E402
from grid.demand.plan import demand_plan, session_model  # noqa: E402
from grid.live.agreement import describe_split, simulate_logged, split_by_zone  # noqa: E402
from grid.live.experiment import (  # noqa: E402
    arrival_schedule,
    fidelity_misses,
    hit_rate_row,
    print_side_by_side,
    run_live,
)
from grid.report import Report, format_table  # noqa: E402
from grid.scenario import Scenario, load_scenario  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) / {five:.2f} (5 min), nproc {os.cpu_count()}"


def with_answer_units(scenario: Scenario, chunks: list[PrefixedChunk]) -> tuple[list[PrefixedChunk], int]:
    """The same turns, each carrying its answer's units too: the units its session's next turn holds up
    to (prompt + answer) // block. A session is told by its first unit outside every system prompt;
    turns with none (a prompt within a block of its system prompt's end) stay as they were, and are
    counted (second value): the what-if slightly understates the answers' reuse."""
    spec = scenario.demand.sessions
    model = session_model(spec, len(scenario.populations), scenario.model.context_tokens)
    pops = range(len(scenario.populations))
    system = {h for a in range(len(model.apps)) for p in pops for h in model.system_ids(a, p)}
    last: dict[int, tuple[PrefixedChunk, int]] = {}  # session key → its latest turn so far
    extended: dict[tuple[int, int], tuple[int, ...]] = {}
    unkeyed = 0
    for c, i in [(chunk, i) for chunk in chunks for i in range(len(chunk))]:
        hashes = c.prefix_hashes[i] or ()
        key = next((h for h in hashes if h not in system), None)
        if key is None:
            unkeyed += 1
            continue
        if key in last:
            pc, pi = last[key]
            units = (int(pc.prompt_tokens[pi]) + int(pc.output_tokens[pi])) // c.block_tokens
            extended[(id(pc), pi)] = hashes[:units]
        last[key] = (c, i)
    out = []
    for c in chunks:
        hashes = [extended.get((id(c), i), h) for i, h in enumerate(c.prefix_hashes)]
        out.append(PrefixedChunk(c.arrival_s, c.population, c.prompt_tokens, c.output_tokens, hashes, c.block_tokens))
    return out, unkeyed


def answer_units_what_if(scenario: Scenario, policy: str | None, duration_s: float, rate_scale: float, seed: int):
    """(simulated report with prompt-only hashes, with answer units too, turns left unextended)."""
    chunks = list(demand_plan(scenario, duration_s, rate_scale, seed).arrivals(np.random.default_rng(seed)))
    extended, unkeyed = with_answer_units(scenario, chunks)
    base = Simulation(scenario, policy, seed, duration_s, rate_scale, arrivals=lambda rng: iter(chunks)).run()
    what_if = Simulation(scenario, policy, seed, duration_s, rate_scale, arrivals=lambda rng: iter(extended)).run()
    return base, what_if, unkeyed


def print_what_if(base: Report, what_if: Report, unkeyed: int) -> None:
    a, b = (r.grid.extra["prefix_cache_hit_rate"] for r in (base, what_if))
    pa, pb = (r.grid.ttft_s["p50"] * 1000 for r in (base, what_if))
    print(
        f"\nwhat-if (simulated): hit rate {a:.1%} prompt-only → {b:.1%} with answer units "
        f"({(b - a) * 100:+.1f} points); TTFT p50 {pa:.0f} → {pb:.0f} ms; "
        f"{unkeyed} of {base.grid.arrivals} turns not extendable"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "tests" / "live" / "sessions.yaml"))
    parser.add_argument("--policy", default=None)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--rate-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stream-interval-s", type=float, default=0.02)
    parser.add_argument("--sim-only", action="store_true", help="skip the live run")
    parser.add_argument("--answer-units", action="store_true", help="add the simulator's answer-units what-if")
    parser.add_argument("--json", default=None, help="write both reports here")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if scenario.demand.sessions is None:
        parser.error(f"{args.scenario} has no demand.sessions")
    seed = scenario.seed if args.seed is None else args.seed
    run = (scenario, args.policy, args.duration_s, args.rate_scale, seed)
    started = time.monotonic()
    print(f"before: {load_average()}")
    sim, sim_requests, zone_ids = simulate_logged(*run)
    misses: list[str] = []
    if not args.sim_only:
        live = run_live(*run, stream_interval_s=args.stream_interval_s)
        print_side_by_side(live.report, sim, live.client)
        summary = {k: v for k, v in live.client.items() if k != "per_request"}
        print(f"load generator: {summary}")
        prompts = arrival_schedule(scenario, args.duration_s, args.rate_scale, seed).prompt_tokens
        print(f"per request: {describe_split(split_by_zone(live.client, sim_requests, zone_ids, prompts))}")
        misses = fidelity_misses(live.report, sim, live.client)
        name, a, b, _ = hit_rate_row(live.report, sim)
        print(f"\n{name}: live {a:.1%} · sim {b:.1%} · utilization live {live.report.totals['utilization']:.0%}")
        print(
            f"fidelity: {'PASS' if not misses else 'MISS'} · wall {time.monotonic() - started:.0f} s · {load_average()}"
        )
        for miss in misses:
            print("  miss:", miss)
        if args.json:
            reports = {"live": live.report.to_dict(), "simulated": sim.to_dict(), "client": live.client}
            reports["sim_per_request"] = {"zone": sim_requests.zone, "cached_tokens": sim_requests.cached}
            reports["sim_per_request"]["ttft_s"] = sim_requests.ttft_s
            Path(args.json).write_text(json.dumps(reports, indent=2))
    else:
        print(format_table(sim))
    if args.answer_units:
        print_what_if(*answer_units_what_if(*run))
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
