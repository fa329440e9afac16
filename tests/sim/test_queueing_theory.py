"""The simulator against queueing theory: Erlang C, Little's law, conservation, determinism, faults.

The M/M/c runs use the `mmc` preset (regions/scenarios/mmc.yaml): one zone of c = 4 single-sequence
replicas, Poisson arrivals at λ = 3.2/s, geometric output lengths (mean 1000 tokens) at 1 ms per
decode step and free prefill, so a request's service time is (tokens − 1) · 1 ms: the discrete twin of
an exponential with mean E[S] = 0.999 s (SCV 1.001). ρ = λ·E[S]/c = 0.7992.

How many requests the Erlang C check needs. At ρ = 0.8 the sample mean of the waiting time is
strongly autocorrelated: over 16 seeds of the preset's own 20 h (≈230k requests) it scattered by
σ ≈ 2.6% (from −6.8% to +3.5%) around Erlang C, so a 3% bound on a single 230k run fails about one
seed in four. The check therefore pools four independent 35 h replications (≈1.6M requests, σ ≈ 1%,
3% is a 3σ bound), run two at a time on the machine's cores (≈15 s wall on two idle cores).
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import pytest

from grid.routing.policy import Policy
from grid.scenario import load_scenario
from grid.serving.request import ERROR, LENGTH, REJECTED, STOP, Request
from grid.sim.simulator import Simulation

SERVERS = 4
REPLICATIONS = 4
REPLICATION_S = 30 * 3600.0  # ≈346k requests each at 3.2/s
ERLANG_C_TOLERANCE = 0.03


# --- theory ---------------------------------------------------------------------------------------


def erlang_c(servers: int, offered_load: float) -> float:
    """P(an arrival waits) in M/M/c with offered load a = λ·E[S] < c (Erlang B recursion, stable)."""
    assert 0 < offered_load < servers
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return servers * blocking / (servers - offered_load * (1.0 - blocking))


def erlang_c_mean_wait_s(servers: int, arrival_rps: float, mean_service_s: float) -> float:
    """Mean time in queue, Wq = C(c, a) · E[S] / (c − a)."""
    a = arrival_rps * mean_service_s
    return erlang_c(servers, a) * mean_service_s / (servers - a)


def test_erlang_c_matches_textbook_values():
    # M/M/1: C = ρ; M/M/2 at a = 1: C = 1/3 (Kleinrock); and Wq of M/M/1 = ρ/(μ − λ).
    assert erlang_c(1, 0.5) == pytest.approx(0.5, rel=1e-12)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)
    assert erlang_c_mean_wait_s(1, 0.8, 1.0) == pytest.approx(4.0, rel=1e-12)
    # M/M/4 at a = 3.2 from the closed form Σ a^k/k! directly.
    a, c = 3.2, 4
    top = a**c / math.factorial(c) * c / (c - a)
    assert erlang_c(c, a) == pytest.approx(top / (sum(a**k / math.factorial(k) for k in range(c)) + top), rel=1e-12)


# --- a policy that watches every request ------------------------------------------------------------


class Tap(Policy):
    """Sends everything to zone 0 and sums what ended requests report (their own timestamps)."""

    name = "tap"

    def __init__(self) -> None:
        super().__init__()
        self.open: dict[int, Request] = {}  # routed and not ended yet
        self.completed = 0
        self.sum_wait_s = 0.0  # scheduled_s − admit_s
        self.sum_sojourn_s = 0.0  # finish_s − admit_s
        self.waited = 0  # completed requests that queued at all
        self.failed: list[Request] = []
        self.rejected: list[Request] = []
        self.finished: list[Request] = []
        self.keep = False  # keep every ended request (short runs only)

    def choose(self, request: Request, candidates, view) -> int:
        self.open[request.id] = request
        return 0

    def observe(self, request: Request) -> None:
        self.open.pop(request.id, None)  # a request no zone could take was never chosen
        if request.status in (STOP, LENGTH):
            self.completed += 1
            wait = request.scheduled_s - request.admit_s
            self.sum_wait_s += wait
            self.sum_sojourn_s += request.finish_s - request.admit_s
            self.waited += wait > 0.0
            if self.keep:
                self.finished.append(request)
        elif request.status == ERROR:
            self.failed.append(request)
        elif request.status == REJECTED:
            self.rejected.append(request)


def _mmc_replication(seed: int, duration_s: float) -> dict:
    """One M/M/4 run; everything the checks need, as plain numbers (it may run in a worker process)."""
    # Load reports only matter to routers; the tap routes blindly, so report rarely (≈15% faster).
    scenario = load_scenario("mmc", overrides={"routing.report_interval_s": 60.0})
    tap = Tap()
    sim = Simulation(scenario, policy=tap, seed=seed, duration_s=duration_s)
    grid = sim.run().to_dict()["grid"]
    zone = sim.zones[0]
    return {
        "seed": seed,
        "duration_s": duration_s,
        "report": {k: grid[k] for k in ("arrivals", "completed", "rejected", "failed", "in_flight")},
        "completed": tap.completed,
        "waited": tap.waited,
        "sum_wait_s": tap.sum_wait_s,
        "sum_sojourn_s": tap.sum_sojourn_s,
        "open": len(tap.open),
        "open_partial_s": sum(duration_s - r.admit_s for r in tap.open.values()),
        "area_in_system": zone.area_in_system,
        "area_queued": zone.area_queued,
    }


@pytest.fixture(scope="module")
def mmc_runs() -> list[dict]:
    seeds = [101 + i for i in range(REPLICATIONS)]
    workers = min(2, os.cpu_count() or 1)
    if workers > 1 and sys.platform == "linux":
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_mmc_replication, seeds, [REPLICATION_S] * REPLICATIONS))
    return [_mmc_replication(seed, REPLICATION_S) for seed in seeds]


def _mmc_theory() -> tuple[float, float]:
    """(λ, E[S]) of the mmc preset, read from the scenario so a preset change can't silently drift."""
    s = load_scenario("mmc")
    profile = s.gpus[s.zones["lab-1"].gpu]
    assert s.zones["lab-1"].replicas == SERVERS and profile.max_num_seqs == 1
    assert profile.prefill_base_s == profile.prefill_per_token_s == profile.frontend_s == 0
    assert s.demand.sizes.output.dist == "exponential" and s.network.jitter_ratio == 0
    # output ~ Geometric(1/m) on {1, 2, ...}: E[tokens − 1] = m − 1 decode steps of decode_base_s.
    mean_service_s = (s.demand.sizes.output.mean - 1) * (profile.decode_base_s + profile.decode_per_seq_s)
    return s.demand.rate_rps, mean_service_s


# --- M/M/c validation -------------------------------------------------------------------------------


def test_mmc_mean_wait_matches_erlang_c(mmc_runs):
    arrival_rps, mean_service_s = _mmc_theory()
    theory_s = erlang_c_mean_wait_s(SERVERS, arrival_rps, mean_service_s)
    n = sum(r["completed"] for r in mmc_runs)
    assert n >= 200_000 * REPLICATIONS
    measured_s = sum(r["sum_wait_s"] for r in mmc_runs) / n
    per_run = [f"{r['sum_wait_s'] / r['completed'] / theory_s - 1:+.2%}" for r in mmc_runs]
    assert measured_s == pytest.approx(theory_s, rel=ERLANG_C_TOLERANCE), (
        f"mean wait {measured_s:.4f}s over {n} requests vs Erlang C {theory_s:.4f}s; per run {per_run}"
    )
    # P(wait > 0) is Erlang C itself, and its estimate is tighter than the mean's.
    p_wait = sum(r["waited"] for r in mmc_runs) / n
    assert p_wait == pytest.approx(erlang_c(SERVERS, arrival_rps * mean_service_s), rel=0.01)


def test_mmc_queue_counter_agrees_with_request_waits(mmc_runs):
    # Little's law on the queue alone: the zone's ∫queued dt / T over λ̂ is the mean wait again.
    for r in mmc_runs:
        mean_queue = r["area_queued"] / r["duration_s"]
        arrival_rps = r["report"]["arrivals"] / r["duration_s"]
        # Only end effects (requests still inside at the end) separate the two: ≈1e-5 here.
        assert mean_queue / arrival_rps == pytest.approx(r["sum_wait_s"] / r["completed"], rel=5e-4)


def test_mmc_littles_law(mmc_runs):
    for r in mmc_runs:
        T = r["duration_s"]
        mean_in_system = r["area_in_system"] / T
        throughput_rps = r["completed"] / T
        mean_sojourn_s = r["sum_sojourn_s"] / r["completed"]
        # The issue asks for 2%; over 345k requests only end effects remain (≈2e-5), so hold it to 0.1%.
        assert mean_in_system == pytest.approx(throughput_rps * mean_sojourn_s, rel=1e-3)
        # On one sample path the identity is exact: the area is every request's time in the system,
        # clipped at the end of the run for those still inside.
        assert r["area_in_system"] == pytest.approx(r["sum_sojourn_s"] + r["open_partial_s"], rel=1e-9)
    # And the level itself is the theory's L = λ·(Wq + E[S]) (within the run-to-run noise).
    arrival_rps, mean_service_s = _mmc_theory()
    theory_l = arrival_rps * (erlang_c_mean_wait_s(SERVERS, arrival_rps, mean_service_s) + mean_service_s)
    pooled_l = sum(r["area_in_system"] for r in mmc_runs) / sum(r["duration_s"] for r in mmc_runs)
    assert pooled_l == pytest.approx(theory_l, rel=0.02)


def test_mmc_conservation(mmc_runs):
    for r in mmc_runs:
        rep = r["report"]
        assert rep["arrivals"] == rep["completed"] + rep["rejected"] + rep["failed"] + rep["in_flight"]
        assert rep["rejected"] == rep["failed"] == 0  # unbounded queue, no faults
        assert rep["completed"] == r["completed"]
        assert rep["in_flight"] == r["open"]


# --- determinism -----------------------------------------------------------------------------------


def _without_meta(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "meta"}


@pytest.mark.parametrize(
    ("scenario", "policy", "duration_s"),
    [("mmc", "nearest", 2 * 3600.0), ("default", "p2c", 30.0), ("default", None, 30.0)],
)
def test_same_seed_same_report_and_different_seed_differs(scenario, policy, duration_s):
    def run(seed: int) -> dict:
        return Simulation(load_scenario(scenario), policy=policy, seed=seed, duration_s=duration_s).run().to_dict()

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first["grid"]["completed"] > 1000
    assert _without_meta(first) != _without_meta(other)
    assert first["grid"]["arrivals"] != other["grid"]["arrivals"]


# --- a zone going down -----------------------------------------------------------------------------

DOWN_AT_S, DOWN_FOR_S, FAULT_RUN_S = 1000.0, 300.0, 2500.0


def test_zone_down_fails_in_flight_refuses_then_serves_again():
    scenario = load_scenario(
        "mmc",
        overrides={"faults": [{"at_s": DOWN_AT_S, "kind": "zone_down", "zone": "lab-1", "duration_s": DOWN_FOR_S}]},
    )
    up_at_s = DOWN_AT_S + DOWN_FOR_S
    tap = Tap()
    tap.keep = True
    sim = Simulation(scenario, policy=tap, seed=3, duration_s=FAULT_RUN_S)
    grid = sim.run().to_dict()["grid"]

    # Everything in the zone when it went down failed then, and nothing else failed.
    assert tap.failed, "no request was in the zone when it went down"
    assert all(r.finish_s == DOWN_AT_S and r.admit_s < DOWN_AT_S for r in tap.failed)
    assert grid["failed"] == len(tap.failed)
    assert any(r.first_token_s >= 0 for r in tap.failed)  # those being served too, not only the queue
    # While down it refused everything: no request was routed to it, admitted or finished then.
    for r in tap.finished:
        assert not DOWN_AT_S <= r.admit_s < up_at_s
        assert r.finish_s < DOWN_AT_S or r.admit_s >= up_at_s
    refused = grid["rejected"]
    expected = 3.2 * DOWN_FOR_S
    assert abs(refused - expected) < 4 * math.sqrt(expected)  # all arrivals of the outage, none else
    # ...and it serves again after: completions of requests admitted after the outage, at the full rate.
    after = [r for r in tap.finished if r.admit_s >= up_at_s]
    assert len(after) == pytest.approx(3.2 * (FAULT_RUN_S - up_at_s), rel=0.1)
    assert sim.zones[0].up and sim.zones[0].in_system == len(tap.open)
    # The accounting still balances.
    assert grid["arrivals"] == grid["completed"] + grid["rejected"] + grid["failed"] + grid["in_flight"]
    assert grid["completed"] == len(tap.finished) and grid["in_flight"] == len(tap.open)


def test_records_hold_every_ended_request_even_unroutable_ones(tmp_path):
    """`records_path` writes one row per request: ended ones, and those in flight at the end as
    `open`. Requests that found no zone up (rejected before routing) are counted in the report but
    were missing from the records (simulator bug)."""
    scenario = load_scenario(
        "mmc",
        overrides={"faults": [{"at_s": DOWN_AT_S, "kind": "zone_down", "zone": "lab-1", "duration_s": DOWN_FOR_S}]},
    )
    records = tmp_path / "records.csv"
    grid = Simulation(scenario, seed=3, duration_s=FAULT_RUN_S, records_path=records).run().to_dict()["grid"]
    with records.open() as f:
        rows = list(csv.DictReader(f))
    statuses = Counter(row["status"] for row in rows)
    assert grid["rejected"] > 0
    assert statuses[REJECTED] == grid["rejected"], statuses
    assert statuses[ERROR] == grid["failed"]
    assert statuses[STOP] == grid["completed"]
    assert statuses["open"] == grid["in_flight"]
    assert len(rows) == grid["arrivals"]
