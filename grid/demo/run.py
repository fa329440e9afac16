"""`grid demo`: the demo world live beside the simulator, told as it happens.

The simulator runs first (seconds) with a `Timeline` sink; then the live grid replays the same
arrivals with its own `Timeline` on the gateway, and every 10 s the window just finished is printed
for both clocks, one line each. At the end: the side-by-side summary, the checks the demo is for
(peak utilization, spill, failover, live vs simulated TTFT), and a self-contained HTML report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from grid.demo.html_report import fault_windows, render
from grid.demo.timeline import Timeline, Window
from grid.dispatch.recording import RecordsSink
from grid.dispatch.sinks import Sink
from grid.live.experiment import LiveResult, format_comparison, run_live
from grid.report import Report, format_table
from grid.routing.crossing import Crossing
from grid.scenario import Scenario
from grid.sim.simulator import Simulation

# The zone links' and health monitor's warnings (a killed actor's failed calls, its restart) would bury
# the timeline; its `down` column and the fault lines tell that story.
QUIET_LOGGERS = ("grid.live.health_monitor", "grid.live.zone_link")
TTFT_P50_TARGET = 0.10  # |live / simulated − 1| over the whole run
PEAK_UTILIZATION_TARGET = 0.50


@dataclass
class DemoRun:
    live: LiveResult
    sim: Report
    live_timeline: Timeline
    sim_timeline: Timeline
    checks: list[tuple[str, bool]]


def header(timeline: Timeline) -> str:
    regions = " ".join(f"{r[:14]:>14}" for r in timeline.world.region_ids)
    head = f"{'t s':>7} {'clock':<5} {'req/s':>6} {'util':>5} {'spill':>6} {'TTFT p50/p99 ms':>16} {'retry':>5}"
    head += f" {'fail':>4}"
    legend = "each region: requests served per second, the share of them spilled in from other regions, utilization"
    return f"{legend}\n{head}  {regions}  down"


def row(timeline: Timeline, w: Window, clock: str) -> str:
    span = f"{w.start_s:.0f}–{w.start_s + timeline.window_s:.0f}" if clock == "sim" else ""
    util = timeline.grid_utilization(w)
    regions = " ".join(_region_cell(timeline, w, r) for r in range(len(timeline.world.region_ids)))
    down = ",".join(timeline.world.zone_ids[z] for z in sorted(w.down)) or "-"
    ttft = f"{_ms(w.ttft_quantile_s(0.5))}/{_ms(w.ttft_quantile_s(0.99))}"
    return (
        f"{span:>7} {clock:<5} {w.arrivals / timeline.window_s:6.1f} {_pct(util):>5} {_pct(w.spill_share):>6} "
        f"{ttft:>16} {w.retried:5d} {w.failed:4d}  {regions}  {down}"
    )


def _region_cell(timeline: Timeline, w: Window, region: int) -> str:
    """A region's load in the window: requests served per second, the share of them from populations
    of other regions (spill into it), and its zones' utilization ("down" when none is up)."""
    served = w.served_by_region[region]
    spilled_in = _pct(w.spilled_into_region[region] / served) if served else "-"
    util = _pct(w.mean_utilization(region))
    return f"{served / timeline.window_s:>5.1f} {spilled_in:>4} {util:>4}"


def _pct(value: float) -> str:
    return f"{value:.0%}" if value == value else "down"


def _ms(value_s: float) -> str:
    return f"{value_s * 1000:.0f}" if value_s == value_s else "-"


def print_windows(sim: Timeline, live: Timeline, start: int, stop: int, out) -> int:
    """Rows for windows [start, stop) of both clocks; returns the next window to print."""
    for i in range(start, stop):
        if i < len(sim.windows):
            out(row(sim, sim.windows[i], "sim"))
        if i < len(live.windows):
            out(row(live, live.windows[i], "live"))
    return max(start, stop)


def checks(run_live_report: Report, sim: Report, live: Timeline, client: dict) -> list[tuple[str, bool]]:
    """What the demo must show, each with whether it did."""
    peak = max((live.grid_utilization(w) for w in live.windows if w.samples), default=math.nan)
    spilled = sum(w.spilled for w in live.windows)
    completed = sum(w.completed for w in live.windows)
    retried = sum(w.retried for w in live.windows)
    statuses = client.get("statuses", {})
    lost = sum(n for status, n in statuses.items() if not status.isdigit())  # unfinished, or no HTTP answer
    failed = run_live_report.grid.failed
    live_p50, sim_p50 = run_live_report.grid.ttft_s["p50"], sim.grid.ttft_s["p50"]
    ratio = live_p50 / sim_p50 - 1 if sim_p50 == sim_p50 and sim_p50 else math.nan
    return [
        (f"peak utilization (live, a 10 s window) {_pct(peak)}, target ≥ {PEAK_UTILIZATION_TARGET:.0%}",
         peak >= PEAK_UTILIZATION_TARGET),
        (f"cross-region spill: {spilled} of {completed} completed requests ({_pct(spilled / max(completed, 1))})",
         spilled > 0),
        (f"failover: {retried} attempts retried on another zone, {lost} requests lost (no answer), "
         f"{failed} failed (cut after their first token, or out of retries)", lost == 0),
        (f"TTFT p50 live {_ms(live_p50)} ms vs simulated {_ms(sim_p50)} ms ({ratio:+.1%}), "
         f"target within {TTFT_P50_TARGET:.0%}", abs(ratio) <= TTFT_P50_TARGET),
    ]  # fmt: skip


def run_demo(
    scenario: Scenario,
    policy: str | None,
    duration_s: float,
    rate_scale: float,
    seed: int,
    html_path: Path | None,
    stream_interval_s: float,
    out=print,
    records_path: Path | None = None,
) -> DemoRun:
    """The demo; `records_path`: the live run's records (`grid sim --replay` replays them)."""
    run = Simulation(scenario, policy, seed, duration_s, rate_scale)
    world = run.world
    sim_timeline = Timeline(world)
    run.sinks.append(sim_timeline)
    sim = run.run()
    live_timelines: list[Timeline] = []
    printed = 0

    records: list[RecordsSink] = []

    def sinks_at(t_go_s: float) -> list[Sink]:
        live_timelines.append(Timeline(world, origin_s=t_go_s))
        if records_path is not None:
            records.append(RecordsSink(records_path, origin_s=t_go_s, crossing=Crossing(world)))
        out(header(sim_timeline))
        return [*live_timelines, *records]

    def progress(elapsed_s: float) -> None:
        nonlocal printed
        printed = print_windows(sim_timeline, live_timelines[0], printed, int(elapsed_s // 10.0 + 1e-6), out)

    for start, end, label in fault_windows(scenario):
        out(f"fault: {label} from {start:g} s to {end:g} s")
    quieted = [(logging.getLogger(name), logging.getLogger(name).level) for name in QUIET_LOGGERS]
    for logger, _ in quieted:
        logger.setLevel(logging.ERROR)
    try:
        live = run_live(
            scenario, policy, duration_s, rate_scale, seed, stream_interval_s=stream_interval_s, log=out,
            sinks_at=sinks_at, progress=progress,
        )  # fmt: skip
    finally:
        for sink in records:
            sink.close()
        for logger, level in quieted:
            logger.setLevel(level)
    live_timeline = live_timelines[0]
    print_windows(sim_timeline, live_timeline, printed, math.ceil(duration_s / live_timeline.window_s), out)
    out("")
    out(format_table(live.report))
    out(format_comparison(live.report, sim, live.client))
    results = checks(live.report, sim, live_timeline, live.client)
    for text, ok in results:
        out(f"  {'✓' if ok else '✗'} {text}")
    if html_path is not None:
        lines = [f"{'✓' if ok else '✗'} {text}" for text, ok in results]
        table = format_table(live.report) + "\n\n" + format_comparison(live.report, sim, live.client)
        html_path.write_text(render(scenario, duration_s, live_timeline, sim_timeline, lines, table))
        out(f"report: {html_path}")
    return DemoRun(live, sim, live_timeline, sim_timeline, results)
