"""Load shapes: request rates per population as pure functions of elapsed seconds.

A `Profile` is what a load test offers the grid: `rates(t)` gives every population's arrival rate
(req/s) at `t` seconds since the start (0 outside the run), plus, for the step ramp, the steps, and
for the outage drill, the admin actions to play. The same profile drives three things:

- Locust, open loop (`loadtests/openloop.py`): the exact Poisson arrivals `profile_arrivals` draws;
- Locust, closed loop: a `LoadTestShape` whose user count follows the total rate (`closed_loop_users`);
- the simulator (`simulate_profile`): the same arrivals (same generator, same seed) fed to
  `grid.sim.simulator.Simulation` in place of the scenario's own demand, with the drill's admin
  actions turned into scenario faults — so a live run and its simulated twin see the same requests.

Nothing here imports Locust at module level (Locust monkey-patches the process with gevent); the
`LoadTestShape` adapter is built by `make_load_test_shape`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grid.demand.arrivals import ArrivalChunk, SizeSampler, diurnal_factor, piecewise_poisson, utc_offsets_h
from grid.scenario import Diurnal, Scenario

SHAPES = ("constant", "diurnal", "flash_crowd", "step_ramp", "outage_drill")
ARRIVAL_WINDOW_S = 1.0  # rates are held constant over windows this long when drawing arrivals


# --- pure rate functions ------------------------------------------------------------------------


def compressed_local_hours(t_s: float, day_s: float, start_hour_utc: float, offsets_h: np.ndarray) -> np.ndarray:
    """Each population's local hour when a 24 h day is compressed into `day_s` seconds."""
    return (start_hour_utc + 24.0 * t_s / day_s + np.asarray(offsets_h, dtype=float)) % 24.0


def diurnal_rates(
    t_s: float,
    mean_rps: float,
    shares: np.ndarray,
    offsets_h: np.ndarray,
    start_hour_utc: float,
    day_s: float,
    diurnal: Diurnal,
) -> np.ndarray:
    """Follow the sun: population p sends mean_rps·share_p·diurnal_factor(its local hour)."""
    local = compressed_local_hours(t_s, day_s, start_hour_utc, offsets_h)
    factor = diurnal_factor(local, diurnal.peak_hour_local, diurnal.trough_ratio, diurnal.trough_hour_local)
    return mean_rps * np.asarray(shares, dtype=float) * factor


def flash_crowd_rates(
    t_s: float, base_rates: np.ndarray, population: int, at_s: float, duration_s: float, factor: float
) -> np.ndarray:
    """`base_rates`, with one population's rate multiplied by `factor` during [at_s, at_s + duration_s)."""
    rates = np.array(base_rates, dtype=float)
    if at_s <= t_s < at_s + duration_s:
        rates[population] *= factor
    return rates


def step_windows(first_rps: float, step_rps: float, step_s: float, n_steps: int) -> tuple[tuple[float, float, float]]:
    """The ramp's steps as (start_s, end_s, total_rps)."""
    return tuple((i * step_s, (i + 1) * step_s, first_rps + i * step_rps) for i in range(n_steps))


def step_ramp_rps(t_s: float, first_rps: float, step_rps: float, step_s: float, n_steps: int) -> float:
    """Total rate of a staircase: first_rps for step_s, then +step_rps every step_s, n_steps steps."""
    if t_s < 0 or step_s <= 0:
        return 0.0
    i = int(t_s // step_s)
    return first_rps + i * step_rps if i < n_steps else 0.0


@dataclass(frozen=True)
class DrillAction:
    """One admin call of an outage drill (the admin API contract: POST path with a JSON body)."""

    at_s: float
    path: str  # /admin/faults or /admin/recover
    body: dict

    @property
    def label(self) -> str:
        kind = self.body.get("kind", "recover")
        return f"{kind} {self.body.get('zone', 'all')}"


def outage_actions(zone: str, down_at_s: float, up_at_s: float) -> tuple[DrillAction, DrillAction]:
    """Fail `zone` at down_at_s (no duration: it stays down) and recover it at up_at_s."""
    if not 0 <= down_at_s < up_at_s:
        raise ValueError(f"an outage needs 0 <= down_at_s < up_at_s, got {down_at_s}, {up_at_s}")
    return (
        DrillAction(down_at_s, "/admin/faults", {"kind": "zone_down", "zone": zone}),
        DrillAction(up_at_s, "/admin/recover", {"zone": zone}),
    )


def due_actions(actions: Iterable[DrillAction], t_prev: float, t_now: float) -> list[DrillAction]:
    """The actions to play on a tick that moves the clock from t_prev (exclusive) to t_now (inclusive);
    the first tick passes t_prev < 0 so an action at 0 is played."""
    return [a for a in actions if t_prev < a.at_s <= t_now]


# --- profiles -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A load profile over [0, duration_s): per-population rates, steps and drill actions."""

    shape: str
    duration_s: float
    population_ids: tuple[str, ...]
    rates_fn: Callable[[float], np.ndarray]
    steps: tuple[tuple[float, float, float], ...] = ()
    actions: tuple[DrillAction, ...] = ()
    edges: tuple[float, ...] = field(default=())  # times where rates jump (windows split there)

    def rates(self, t_s: float) -> np.ndarray:
        if not 0.0 <= t_s < self.duration_s:
            return np.zeros(len(self.population_ids))
        return np.asarray(self.rates_fn(t_s), dtype=float)

    def total_rps(self, t_s: float) -> float:
        return float(self.rates(t_s).sum())

    def window_edges(self, window_s: float = ARRIVAL_WINDOW_S) -> np.ndarray:
        edges = set(np.arange(0.0, self.duration_s, window_s).tolist()) | {self.duration_s}
        edges |= {t for t in self.edges if 0.0 < t < self.duration_s}
        return np.array(sorted(edges))

    def peak_rps(self) -> float:
        edges = self.window_edges()
        return max((self.total_rps(0.5 * (a + b)) for a, b in zip(edges[:-1], edges[1:], strict=True)), default=0.0)

    def mean_rps(self) -> float:
        edges = self.window_edges()
        spans = np.diff(edges)
        totals = [self.total_rps(0.5 * (a + b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        return float(np.dot(spans, totals) / self.duration_s) if self.duration_s > 0 else 0.0


def _shares(scenario: Scenario) -> np.ndarray:
    shares = np.array([p.demand_share for p in scenario.populations.values()], dtype=float)
    return shares / shares.sum()


def build_profile(
    scenario: Scenario,
    shape: str,
    duration_s: float,
    rps: float,
    *,
    n_steps: int = 8,
    crowd_population: str | None = None,
    crowd_factor: float = 4.0,
    drill_zone: str | None = None,
) -> Profile:
    """A named shape over `duration_s` seconds for this scenario's populations.

    `rps` is the shape's scale: the daily mean (diurnal), the base rate (constant, flash_crowd,
    outage_drill) or the last and highest step (step_ramp, which climbs in `n_steps` equal steps
    from rps/n_steps). Populations split each rate by their demand shares (diurnal: by their local
    hour too). Flash crowd: `crowd_population` (default: the largest) ×`crowd_factor` over the middle
    third. Outage drill: `drill_zone` (default: the first zone) down over the middle third."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    if not duration_s > 0 or not rps > 0:
        raise ValueError("a profile needs duration_s > 0 and rps > 0")
    pops = tuple(scenario.populations)
    shares = _shares(scenario)
    flat = rps * shares
    third = duration_s / 3.0
    if shape == "constant":
        return Profile(shape, duration_s, pops, lambda t: flat)
    if shape == "diurnal":
        demand = scenario.demand
        start = demand.start_utc
        offsets = utc_offsets_h(list(scenario.populations.values()), start)
        start_hour = start.hour + start.minute / 60 + start.second / 3600
        diurnal = demand.diurnal or Diurnal()

        def rates(t: float) -> np.ndarray:
            return diurnal_rates(t, rps, shares, offsets, start_hour, duration_s, diurnal)

        return Profile(shape, duration_s, pops, rates)
    if shape == "flash_crowd":
        name = crowd_population or pops[int(np.argmax(shares))]
        if name not in pops:
            raise ValueError(f"unknown population {name!r}; known: {', '.join(pops)}")
        index = pops.index(name)
        return Profile(
            shape,
            duration_s,
            pops,
            lambda t: flash_crowd_rates(t, flat, index, third, third, crowd_factor),
            edges=(third, 2 * third),
        )
    if shape == "step_ramp":
        if n_steps < 1:
            raise ValueError("a step ramp needs n_steps >= 1")
        step_s = duration_s / n_steps
        first = rps / n_steps
        steps = step_windows(first, first, step_s, n_steps)
        return Profile(
            shape,
            duration_s,
            pops,
            lambda t: shares * step_ramp_rps(t, first, first, step_s, n_steps),
            steps=steps,
            edges=tuple(s for s, _, _ in steps[1:]),
        )
    zone = drill_zone or next(iter(scenario.zones))
    if zone not in scenario.zones:
        raise ValueError(f"unknown zone {zone!r}; known: {', '.join(scenario.zones)}")
    return Profile(shape, duration_s, pops, lambda t: flat, actions=outage_actions(zone, third, 2 * third))


# --- open-loop arrivals (shared by Locust and the simulator) -----------------------------------


def profile_arrivals(
    profile: Profile, sizes: SizeSampler, rng: np.random.Generator, window_s: float = ARRIVAL_WINDOW_S
) -> Iterator[ArrivalChunk]:
    """Piecewise-constant-rate Poisson arrivals of the profile, one window per chunk (the same
    construction as grid.demand.arrivals.poisson_arrivals, with the profile's rates)."""
    return piecewise_poisson(profile.rates, profile.window_edges(window_s), sizes, rng)


def arrivals_table(profile: Profile, sizes: SizeSampler, seed: int) -> ArrivalChunk:
    """All of a profile's arrivals in one chunk (what the open-loop user replays)."""
    chunks = list(profile_arrivals(profile, sizes, np.random.default_rng(seed)))
    if not chunks:
        empty = np.zeros(0)
        return ArrivalChunk(empty, empty.astype(np.int64), empty.astype(np.int64), empty.astype(np.int64))
    return ArrivalChunk(*(np.concatenate([getattr(c, f) for c in chunks]) for f in ArrivalChunk.__dataclass_fields__))


def slot_slice(table: ArrivalChunk, slot: int, slots: int) -> ArrivalChunk:
    """Every `slots`-th arrival from `slot`: how open-loop generators on several workers split one
    schedule (the union of the slices is the whole schedule)."""
    if not 0 <= slot < slots:
        raise ValueError(f"slot {slot} is not in 0..{slots - 1}")
    return ArrivalChunk(*(getattr(table, f)[slot::slots] for f in ArrivalChunk.__dataclass_fields__))


# --- closed loop and the Locust adapter ---------------------------------------------------------


def closed_loop_users(profile: Profile, t_s: float, peak_users: int) -> int:
    """Users for a closed-loop run at `t_s`: `peak_users` at the profile's peak, scaled by the total
    rate, at least 1 while the run lasts (the population mix is the user classes' weights)."""
    if not 0.0 <= t_s < profile.duration_s:
        return 0
    peak = profile.peak_rps()
    if peak <= 0:
        return 0
    return max(1, math.ceil(peak_users * profile.total_rps(t_s) / peak - 1e-9))


def shape_tick(
    profile: Profile, t_s: float, open_loop: bool, users: int, drain_s: float = 0.0
) -> tuple[int, float] | None:
    """What `LoadTestShape.tick` returns at `t_s`: open loop keeps `users` generators running (they
    follow the profile themselves) until the end plus `drain_s`; closed loop follows
    `closed_loop_users`. None ends the test."""
    if t_s >= profile.duration_s + (drain_s if open_loop else 0.0):
        return None
    if open_loop:
        return users, float(max(1, users))
    return closed_loop_users(profile, t_s, users), float(max(1, users))


def make_load_test_shape(
    profile: Profile, open_loop: bool, users: int, drain_s: float = 0.0, on_tick: Callable | None = None
):
    """A `LoadTestShape` subclass over the profile (imports Locust: call it from a locustfile).
    `on_tick(shape, t_prev, t_now)` runs on every tick (the outage drill plays its actions there)."""
    from locust import LoadTestShape

    class GridShape(LoadTestShape):
        """Follows a grid.loadtests profile (see loadtests/shapes.py)."""

        _last_t = -1.0

        def tick(self):
            t = self.get_run_time()
            if on_tick is not None:
                on_tick(self, self._last_t, t)
            self._last_t = t
            return shape_tick(profile, t, open_loop, users, drain_s)

    GridShape.__name__ = GridShape.__qualname__ = f"GridShape_{profile.shape}"
    return GridShape


# --- the simulator's replay ---------------------------------------------------------------------


def profile_faults(profile: Profile) -> list[dict]:
    """The drill's admin actions as scenario faults (zone_down from its fault to its recovery)."""
    faults = []
    downs = [a for a in profile.actions if a.path == "/admin/faults"]
    for down in downs:
        zone = down.body.get("zone")
        ups = [a.at_s for a in profile.actions if a.path == "/admin/recover" and a.body.get("zone") in (zone, None)]
        later = [t for t in ups if t > down.at_s]
        fault = {k: v for k, v in down.body.items() if v is not None}
        fault["at_s"] = down.at_s
        if later:
            fault["duration_s"] = min(later) - down.at_s
        faults.append(fault)
    return faults


def simulate_profile(
    scenario: Scenario,
    profile: Profile,
    seed: int,
    policy: str | None = None,
    records_path: str | Path | None = None,
):
    """Run the simulator on the profile's arrivals (`profile_arrivals` with `default_rng(seed)`:
    the very arrivals a one-generator open-loop Locust run sends) and the drill's faults. The
    scenario's load-report interval means the same in both."""
    from grid.demand.arrivals import size_sampler
    from grid.scenario import Fault
    from grid.sim.simulator import Simulation

    faults = list(scenario.faults) + [Fault.model_validate(f) for f in profile_faults(profile)]
    s = scenario.model_copy(update={"faults": faults, "duration_s": profile.duration_s})
    sizes = size_sampler(scenario.demand.sizes)

    def arrivals(rng: np.random.Generator):
        return profile_arrivals(profile, sizes, rng)

    return Simulation(s, policy, seed, profile.duration_s, records_path=records_path, arrivals=arrivals).run()


# --- step-ramp analysis -------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStat:
    offered_rps: float
    start_s: float
    end_s: float
    sent: int
    ok: int
    failed: int
    achieved_rps: float  # completions of the step's arrivals per second of the measured window
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float


def _q(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def step_stats(records: Iterable[dict], steps: Iterable[tuple[float, float, float]], settle_frac: float = 0.25):
    """Per step: the requests sent in [start + settle, end) and their outcomes. A record is a dict
    with `t_s` (send time since the start), `ok` (bool), `ttft_s`, `tpot_s`."""
    rows = list(records)
    out = []
    for start, end, rps in steps:
        lo = start + settle_frac * (end - start)
        mine = [r for r in rows if lo <= r["t_s"] < end]
        good = [r for r in mine if r["ok"]]
        ttft = [r["ttft_s"] for r in good if r["ttft_s"] == r["ttft_s"]]
        tpot = [r["tpot_s"] for r in good if r["tpot_s"] == r["tpot_s"]]
        out.append(
            StepStat(
                offered_rps=rps,
                start_s=start,
                end_s=end,
                sent=len(mine),
                ok=len(good),
                failed=len(mine) - len(good),
                achieved_rps=len(good) / (end - lo) if end > lo else math.nan,
                ttft_p50_s=_q(ttft, 50),
                ttft_p99_s=_q(ttft, 99),
                tpot_p50_s=_q(tpot, 50),
            )
        )
    return out


@dataclass(frozen=True)
class Knee:
    last_good_rps: float | None  # the highest step before the first that breaks the SLO
    first_bad_rps: float | None  # the first step whose p99 TTFT breaks the SLO (or that fails > 1%)
    knee_rps: float | None  # where p99 TTFT crosses the SLO, interpolated between those two steps


def find_knee(stats: list[StepStat], slo_ttft_s: float, max_failed_share: float = 0.01) -> Knee:
    """The first step that breaks the SLO — p99 TTFT above it, or more than `max_failed_share` of
    its requests failed — and the rate where p99 TTFT crosses the SLO (linear between the last good
    step and that one; the last good rate when the break is by failures only)."""
    last_good = None
    for st in stats:
        failed_share = st.failed / st.sent if st.sent else 0.0
        broke = not (st.ttft_p99_s <= slo_ttft_s) or failed_share > max_failed_share
        if not broke:
            last_good = st
            continue
        if last_good is None:
            return Knee(None, st.offered_rps, st.offered_rps)
        knee = last_good.offered_rps
        a, b = last_good.ttft_p99_s, st.ttft_p99_s
        if b == b and b > slo_ttft_s and b > a:
            knee = last_good.offered_rps + (slo_ttft_s - a) / (b - a) * (st.offered_rps - last_good.offered_rps)
        return Knee(last_good.offered_rps, st.offered_rps, knee)
    return Knee(last_good.offered_rps if last_good else None, None, None)


# --- records -----------------------------------------------------------------------------------

RECORD_FIELDS = ("t_s", "population", "status", "ok", "ttft_s", "tpot_s", "e2e_s", "output_tokens", "late_s")


def read_records(paths: Iterable[str | Path]) -> list[dict]:
    """Per-request records the locustfile writes (one CSV per Locust process)."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows.append(
                    {
                        "t_s": float(row["t_s"]),
                        "population": row["population"],
                        "status": row["status"],
                        "ok": row["ok"] == "1",
                        "ttft_s": float(row["ttft_s"]) if row["ttft_s"] else math.nan,
                        "tpot_s": float(row["tpot_s"]) if row["tpot_s"] else math.nan,
                        "e2e_s": float(row["e2e_s"]) if row["e2e_s"] else math.nan,
                        "late_s": float(row["late_s"]) if row.get("late_s") else math.nan,
                    }
                )
    return rows


def sim_records(path: str | Path) -> list[dict]:
    """The simulator's `--records` CSV in the same shape (t_s = arrival)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            ok = row["status"] in ("stop", "length")
            rows.append(
                {
                    "t_s": float(row["arrival_s"]),
                    "population": row["population"],
                    "status": row["status"],
                    "ok": ok,
                    "ttft_s": float(row["ttft_s"]) if row["ttft_s"] else math.nan,
                    "tpot_s": float(row["tpot_s"]) if row["tpot_s"] else math.nan,
                    "e2e_s": float(row["e2e_s"]) if row["e2e_s"] else math.nan,
                    "late_s": math.nan,
                }
            )
    return rows
