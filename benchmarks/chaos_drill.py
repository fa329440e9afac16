"""Chaos drill on the live grid: minutes of open-loop load while a random zone is killed every 15 s.

The grid (Ray zone actors + gateway on 127.0.0.1) runs in this process; the load generator and the
killer run in a child process and talk HTTP only (`grid.live.drill`). Each kill is a `zone_down`
through the admin API: the zone's Ray actor is killed, Ray restarts it, it stays down for
`--down-s`, then comes back empty. Checks (exit 1 if any fails):

- zero requests lost or hung: every client got a complete answer before its deadline;
- client-side counts == the gateway's RunStats == the `grid_requests_total` deltas;
- errors only mid-stream on a killed zone (everything else was retried elsewhere), and counted;
- every kill detected within 2 s;
- the simulator, replaying the very requests the gateway received with the same kills at the same
  times, counts the same outcomes and retries within the bounds `count_bounds` justifies.

    .venv/bin/python benchmarks/chaos_drill.py                         # 130 s, kill every 15 s
    .venv/bin/python benchmarks/chaos_drill.py --duration-s 30 --json drill.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grid.demand.arrivals import ArrivalChunk  # noqa: E402
from grid.dispatch.sinks import Sink  # noqa: E402
from grid.live import drill  # noqa: E402
from grid.live.gateway import GatewaySettings  # noqa: E402
from grid.live.server import build_live_grid, serving  # noqa: E402
from grid.scenario import Fault, Scenario, load_scenario  # noqa: E402
from grid.serving.request import ERROR, LENGTH, REJECTED, STOP  # noqa: E402
from grid.sim.simulator import Simulation  # noqa: E402

TOKEN = "chaos-drill-token"
COUNTS = ("completed", "failed_midstream", "failed", "rejected", "retries")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "tests" / "live" / "small.yaml"))
    parser.add_argument("--duration-s", type=float, default=130.0)
    parser.add_argument("--rate-rps", type=float, default=16.0)
    parser.add_argument("--kill-every-s", type=float, default=15.0)
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--deadline-s", type=float, default=30.0, help="the gateway's per-request deadline")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    scenario = load_scenario(args.scenario)
    settings = GatewaySettings(admin_token=TOKEN, request_timeout_s=args.deadline_s)
    grid = build_live_grid(scenario, settings, stream_interval_s=0.02, num_cpus=2)
    gateway = grid.gateway
    populations = list(scenario.populations)
    zones = list(scenario.zones)
    try:
        with serving(grid) as url:
            import httpx

            with httpx.Client(base_url=url) as client:
                before = drill.server_counts(client.get("/metrics").text)
                retries_before = gateway.counts["retries"]
                gateway.reset_stats()
                arrivals = record_arrivals(gateway)
                started = time.monotonic()
                tally = drill.drive_in_process(
                    args.duration_s + args.deadline_s + 120,
                    url=url,
                    model=scenario.model.name,
                    populations=populations,
                    zones=zones,
                    duration_s=args.duration_s,
                    rate_rps=args.rate_rps,
                    admin_token=TOKEN,
                    kill_every_s=args.kill_every_s,
                    first_kill_s=args.kill_every_s / 2,
                    down_s=args.down_s,
                    stream_share=args.stream_share,
                    client_timeout_s=args.deadline_s + 10,
                    seed=args.seed,
                )
                wall_s = time.monotonic() - started
                after = drill.server_counts(client.get("/metrics").text)
                stats, in_flight = gateway.snapshot_stats()
                zones_json = client.get("/grid/zones").json()
                live_retries = gateway.counts["retries"] - retries_before
    finally:
        grid.close()

    summary = tally.to_dict()
    client_counts = drill.client_counts(tally)
    run_stats = drill.run_stats_counts(stats)
    metrics = drill.diff(after, before)
    counts = summary["counts"]
    detections = [k.get("detection_s") for k in tally.kills]
    kills = [Kill.from_history(k, args.down_s) for k in tally.kills if k.get("killed_at_s") is not None]
    sim = replay_in_simulator(scenario, arrivals, kills, seed=args.seed)
    live = {**counts, "retries": live_retries}
    expected = expected_live(sim)
    bounds = count_bounds(len(kills), sim["detection_window_load"])
    agree = compare_counts(live, expected, bounds)
    checks = {
        "no request lost or hung": counts["lost"] == 0 and counts["unexpected"] == 0,
        "errors only mid-stream": counts["failed"] == 0,
        "mid-stream errors only on killed zones": set(summary["midstream_zones"]) <= {k["zone"] for k in tally.kills},
        "mid-stream errors counted by the gateway": counts["failed_midstream"]
        == sum(k.get("midstream_failures", 0) for k in tally.kills),
        "client == RunStats": client_counts == run_stats and in_flight == 0,
        "client == grid_requests_total": client_counts == metrics,
        "every kill detected in <= 2 s": all(d is not None and d <= 2.0 for d in detections),
        "simulator replay: same counts within tolerance": all(agree.values()) and sim["in_flight"] == 0,
    }
    result = {
        "scenario": scenario.name,
        "duration_s": args.duration_s,
        "rate_rps": args.rate_rps,
        "wall_s": round(wall_s, 1),
        "client": summary,
        "client_counts": client_counts,
        "run_stats": run_stats,
        "grid_requests_total_delta": metrics,
        "gateway_counts": zones_json["counts"],
        "simulated": sim,
        "count_comparison": {
            k: {"live": live[k], "expected": expected[k], "live_minus_expected_in": bounds[k], "ok": agree[k]}
            for k in COUNTS
        },
        "checks": checks,
    }
    print(f"chaos drill: {scenario.name}, {args.duration_s:.0f} s at {args.rate_rps} req/s, {len(tally.kills)} kills")
    print(f"  client: {summary['sent']} sent · {counts} · retried {summary['retried']}")
    print(f"  RunStats {run_stats} · grid_requests_total Δ {metrics}")
    print("  kill  zone          detection_s  failover_s  failovers  midstream_failures  restarted_after_s")
    for kill in tally.kills:
        restarted = (kill.get("restarted_at_s") or 0) - (kill.get("killed_at_s") or 0)
        print(
            f"  {kill['at_s']:5.1f} {kill['zone']:<13} {_f(kill.get('detection_s'))}  {_f(kill.get('failover_s'))}"
            f"  {kill.get('failovers', 0):9d}  {kill.get('midstream_failures', 0):18d}  {restarted:17.3f}"
        )
    print(f"  simulator replay of the same {len(arrivals)} requests and {len(kills)} kills: {sim}")
    print("  count               live  expected (sim)  live − expected in")
    for k in COUNTS:
        low, high = bounds[k]
        ok = "ok" if agree[k] else "FAIL"
        print(f"  {k:<18}{live[k]:6d}{expected[k]:10d}      [{low:+d}, {high:+d}]  {ok}")
    valid = [d for d in detections if d is not None]
    if valid:
        print(f"  detection: max {max(valid):.3f} s, mean {sum(valid) / len(valid):.3f} s")
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


# --- the same requests and kills in the simulator ------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One request as the gateway received it: what the simulator replays."""

    t_s: float  # on the gateway's clock (`gateway.now()`)
    population: int
    prompt_tokens: int
    output_tokens: int
    stream: bool


def record_arrivals(gateway) -> list[Arrival]:
    """From now on, note every request the gateway receives (until `del gateway.handle`).

    The drill's requests set `max_tokens` with `ignore_eos`, so each answer is exactly that long (capped
    by the context) and the simulator can replay it token for token."""
    arrivals: list[Arrival] = []
    handle = gateway.handle

    async def recording(chat, body, prompt_tokens, population, prompt_ids=()):
        limit = body.token_limit
        output = min(limit, gateway.context_tokens - prompt_tokens) if body.ignore_eos and limit else -1
        arrivals.append(Arrival(gateway.now(), population, prompt_tokens, output, bool(body.stream)))
        return await handle(chat, body, prompt_tokens, population, prompt_ids)

    gateway.handle = recording
    return arrivals


class _Watch(Sink):
    """How each request ended: status, whether it had its first token, when it arrived, when its
    client saw the end (replay time), and its last zone."""

    def __init__(self) -> None:
        self.outcomes: dict[int, tuple[str, bool, float, float, int]] = {}

    def ended(self, request, outcome, now_s: float) -> None:
        first = request.first_token_s >= 0.0
        self.outcomes[request.id] = (outcome.status, first, request.arrival_s, now_s, outcome.zone)


@dataclass(frozen=True)
class Kill:
    """A live `zone_down`, from the gateway's fault history (times on the gateway clock)."""

    zone: str
    killed_at_s: float
    down_s: float
    detection_s: float  # until the gateway saw the zone gone

    @classmethod
    def from_history(cls, record: dict, down_s: float) -> Kill:
        return cls(record["zone"], record["killed_at_s"], down_s, record.get("detection_s") or 0.0)


def replay_in_simulator(
    scenario: Scenario,
    arrivals: list[Arrival],
    kills: list[Kill],
    seed: int,
    drain_s: float = 60.0,
    ended: list[tuple[float, str | None, str]] | None = None,
) -> dict[str, int]:
    """The simulator on the very requests the live gateway received, with the same kills at the same
    times (`arrivals` and kills share the gateway's clock; the replay starts at the first arrival).

    Counts in the drill's terms: `failed_midstream` had its first token when its zone died, `failed`
    did not (no zone left to retry on, or over the budget); `failed_unary_after_first_token` counts
    failures the live grid retries instead (a non-streaming answer has sent nothing before it
    completes, so the gateway retries it whenever it fails; the simulator has no non-streaming
    requests). `detection_window_load`: requests the simulator sent to each killed zone in the
    `detection_s` before its kill, summed — about as many as the live gateway sends into the dead zone
    before it sees it gone. `ended`, if given, receives every ended request as (when the client saw
    its end, replay time; its last zone id; status)."""
    if not arrivals:
        raise ValueError("no arrivals to replay")
    arrivals = sorted(arrivals, key=lambda a: a.t_s)
    if min(a.output_tokens for a in arrivals) < 1:
        raise ValueError("the replay needs exact answer lengths (max_tokens with ignore_eos)")
    t0 = arrivals[0].t_s
    kills = [k for k in kills if k.killed_at_s >= t0]
    faults = [Fault(at_s=k.killed_at_s - t0, kind="zone_down", zone=k.zone, duration_s=k.down_s) for k in kills]
    replayed = scenario.model_copy(update={"faults": faults})
    zone_ids = list(replayed.zones)
    chunk = ArrivalChunk(
        arrival_s=np.array([a.t_s - t0 for a in arrivals]),
        population=np.array([a.population for a in arrivals]),
        prompt_tokens=np.array([a.prompt_tokens for a in arrivals]),
        output_tokens=np.array([a.output_tokens for a in arrivals]),
    )

    watch = _Watch()
    end_s = max([chunk.arrival_s[-1]] + [f.at_s + f.duration_s for f in faults]) + drain_s
    sim = Simulation(replayed, seed=seed, duration_s=float(end_s), arrivals=lambda rng: [chunk], sinks=[watch])
    report = sim.run()
    names = ("completed", "failed_midstream", "failed", "rejected", "failed_unary_after_first_token")
    counts = dict.fromkeys(names, 0)
    counts["detection_window_load"] = 0
    windows = [(zone_ids.index(k.zone), k.killed_at_s - t0 - k.detection_s, k.killed_at_s - t0) for k in kills]
    for rid, (status, first, arrival_s, end_s, zone) in sorted(watch.outcomes.items()):
        if ended is not None:
            ended.append((end_s, zone_ids[zone] if zone >= 0 else None, status))
        counts["detection_window_load"] += sum(zone == z and lo <= arrival_s < hi for z, lo, hi in windows)
        if status in (STOP, LENGTH):
            counts["completed"] += 1
        elif status == REJECTED:
            counts["rejected"] += 1
        elif status == ERROR and not first:
            counts["failed"] += 1
        elif arrivals[rid].stream:
            counts["failed_midstream"] += 1
        else:
            counts["failed_unary_after_first_token"] += 1
    counts["retries"] = report.grid.retries
    counts["in_flight"] = report.totals["in_flight"]
    return counts


def expected_live(sim: dict[str, int]) -> dict[str, int]:
    """What the live grid should count, from the simulator's replay: it retries (and completes) the
    non-streaming requests the simulator fails after their first token."""
    unary = sim["failed_unary_after_first_token"]
    return {
        "completed": sim["completed"] + unary,
        "failed_midstream": sim["failed_midstream"],
        "failed": sim["failed"],
        "rejected": sim["rejected"],
        "retries": sim["retries"] + unary,
    }


TIMING_SLACK = 2  # requests per kill, either way; independent across kills, so it adds up as √kills


def count_bounds(kills: int, detection_window_load: int) -> dict[str, tuple[int, int]]:
    """How far each live count may be from the simulator's (live − expected ∈ [low, high]).

    Both runs see the same requests and the same kills at the same instants; what differs is timing:
    - around each kill (`TIMING_SLACK` either way, × √kills as the kills are independent): the gateway
      stamps `killed_at_s` just before Ray's asynchronous kill, live service times are within ≈5% of
      the model's, and the two routers see slightly different load reports, so a request finishing,
      starting or getting its first token within tens of ms of the kill, or routed to another zone,
      lands on the other side (completed, failed mid-stream or retried) — ≈4 requests are in flight on
      a zone at 16 req/s, and ±1–2 moved per kill in the runs we made;
    - detection (one-sided, at most `detection_window_load`): the simulated router sees a dead zone at
      its next load report (≤ 0.1 s here); the live gateway keeps sending to it until it sees it gone
      (`detection_s`, 0.6–1.3 s). Each such request is refused and retried live — or, when Ray holds
      its submit until the actor has restarted, admitted by the fresh, not yet held-down actor, given a
      first token and failed mid-stream with the rest. So live may have up to that many more retries
      or mid-stream failures, and as many fewer completions.
    Nothing may fail before its first token or be rejected on either side (one zone down at a time,
    the budget's floor of 10 retrying requests is not reached): those must be equal."""
    slack = TIMING_SLACK * math.ceil(math.sqrt(kills)) + 1
    return {
        "completed": (-slack - detection_window_load, slack),
        "failed_midstream": (-slack, slack + detection_window_load),
        "failed": (0, 0),
        "rejected": (0, 0),
        "retries": (-slack, slack + detection_window_load),
    }


def compare_counts(
    live: dict[str, int], expected: dict[str, int], bounds: dict[str, tuple[int, int]]
) -> dict[str, bool]:
    """Per count, whether live − expected lies within its bounds."""
    return {k: bounds[k][0] <= live[k] - expected[k] <= bounds[k][1] for k in COUNTS}


def _f(value) -> str:
    return f"{value:11.3f}" if value is not None else "          -"


if __name__ == "__main__":
    sys.exit(main())
