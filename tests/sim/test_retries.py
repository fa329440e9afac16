"""Retries in the simulator, with the live gateway's semantics (grid.serving.retry): an attempt that fails
before its first token is retried on another zone, at most `max_retries` times, never twice on one
zone, within Envoy's retry budget; every request still ends exactly once.

Most tests replay a hand-made burst on the small live world (tests/live/small.yaml: berlin is nearest
to frankfurt-1, then frankfurt-2, then mexico-1) with single-replica zones, no jitter and a policy
that always picks the nearest zone it is offered, so every count is known in advance.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from grid.demand.arrivals import ArrivalChunk
from grid.routing.policy import Policy
from grid.scenario import load_scenario
from grid.serving.request import ERROR, REJECTED, STOP
from grid.serving.retry import MAX_RETRIES, RETRY_BUDGET_MIN, RETRY_BUDGET_RATIO, RetryBudget
from grid.serving.zone import Zone
from grid.sim.simulator import Simulation

SMALL = Path(__file__).resolve().parent.parent / "live" / "small.yaml"
F1, F2, MX = 0, 1, 2  # zone indices: frankfurt-1, frankfurt-2, mexico-1
BERLIN = 0
KILL_AT_S = 0.5
OUTPUT_TOKENS = 300  # ≈ 2 s of decode: nothing finishes before the kill


def tiny_gpu(max_num_seqs: int) -> dict:
    """A replica serving `max_num_seqs` sequences at ≈7 ms per decode step, no frontend delay."""
    return {
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": 8192,
        "kv_cache_tokens": 760000,
        "decode_base_s": 0.007,
        "decode_per_seq_s": 0.0,
        "prefill_base_s": 0.005,
        "prefill_per_token_s": 0.00005,
        "frontend_s": 0.0,
    }


def small_world(max_num_seqs: int, max_queue: int, faults=(), **routing):
    overrides = {
        "network.jitter_ratio": 0.0,
        "gpus.tiny": tiny_gpu(max_num_seqs),
        "routing.report_interval_s": 0,
        "faults": list(faults),
    }
    for zone in ("frankfurt-1", "frankfurt-2", "mexico-1"):
        overrides[f"zones.{zone}.replicas"] = 1
        overrides[f"zones.{zone}.gpu"] = "tiny"
        overrides[f"zones.{zone}.max_queue"] = max_queue
    overrides.update({f"routing.{k}": v for k, v in routing.items()})
    return load_scenario(str(SMALL), overrides)


class Nearest(Policy):
    """Always the first zone offered (nearest first); remembers every choice."""

    name = "first"

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[tuple[int, list[int]]] = []  # (request id, candidates offered)
        self.ended: dict[int, object] = {}

    def choose(self, request, candidates, view) -> int:
        candidates = list(candidates)
        self.offered.append((request.id, candidates))
        return candidates[0]

    def observe(self, request) -> None:
        assert request.id not in self.ended, f"request {request.id} ended twice"
        self.ended[request.id] = request


class TappedZone(Zone):
    """A zone that logs each admission as (request id, zone) into `log` (set by `Burst`)."""

    log: list[tuple[int, int]]

    def admit(self, request, now) -> bool:
        ok = super().admit(request, now)
        if ok:
            self.log.append((request.id, request.zone))
        return ok


class Burst(Simulation):
    """`n` requests from berlin, 1 ms apart from t = 1 ms, each `OUTPUT_TOKENS` long."""

    zone_type = TappedZone

    def __init__(self, scenario, n: int, policy=None, **kwargs) -> None:
        super().__init__(scenario, policy=policy or Nearest(), seed=1, arrivals=self.burst, **kwargs)
        self.n = n
        self.admitted: list[tuple[int, int]] = []  # (request id, zone) for every admission
        for zone in self.zones:
            zone.log = self.admitted

    def burst(self, rng):
        n = self.n
        return [
            ArrivalChunk(
                arrival_s=np.arange(1, n + 1) * 0.001,
                population=np.full(n, BERLIN),
                prompt_tokens=np.full(n, 100),
                output_tokens=np.full(n, OUTPUT_TOKENS),
            )
        ]


def kill(zone: str, at_s: float = KILL_AT_S) -> dict:
    return {"at_s": at_s, "kind": "zone_down", "zone": zone, "duration_s": 30}


def records(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def assert_accounted(report) -> None:
    g = report.grid
    assert g.arrivals == g.completed + g.rejected + g.failed + report.totals["in_flight"]


# --- shared definition --------------------------------------------------------------------------


def test_defaults_are_the_gateways_and_the_scenarios():
    routing = load_scenario("default").routing
    assert (
        (routing.max_retries, routing.retry_budget_ratio, routing.retry_budget_min)
        == (
            MAX_RETRIES,
            RETRY_BUDGET_RATIO,
            RETRY_BUDGET_MIN,
        )
        == (2, 0.2, 10)
    )


def test_retry_budget_is_a_share_of_active_requests_with_a_floor():
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    budget.retrying = 2
    assert budget.allows(1)  # the floor
    budget.retrying = 3
    assert not budget.allows(10)  # max(3, 2) = 3
    assert budget.allows(20)  # max(3, 4) = 4
    budget.retrying = 4
    assert not budget.allows(20)


@pytest.mark.parametrize("field, value", [("max_retries", -1), ("retry_budget_ratio", 1.5), ("retry_budget_min", -2)])
def test_bad_retry_settings_are_input_errors(field, value):
    from grid.errors import GridInputError

    with pytest.raises(GridInputError, match=f"routing.{field}"):
        load_scenario(str(SMALL), {f"routing.{field}": value})


# --- a zone killed with requests queued -----------------------------------------------------------


def test_queued_requests_of_a_killed_zone_are_retried_elsewhere_and_complete(tmp_path):
    """frankfurt-1 serves 2 of 10 requests and queues 8 when it is killed: the 2 that have tokens fail
    (mid-stream), the 8 without one are retried once on frankfurt-2 and complete there, their TTFT
    counted from their original arrival."""
    scenario = small_world(max_num_seqs=2, max_queue=100, faults=[kill("frankfurt-1")])
    path = tmp_path / "records.csv"
    sim = Burst(scenario, 10, duration_s=30, records_path=path)
    report = sim.run()
    g = report.grid
    assert (g.completed, g.failed, g.rejected, g.retries) == (8, 2, 0, 8)
    assert report.totals["in_flight"] == 0
    assert report.zones[F1].retries == 8 and report.zones[F2].retries == report.zones[MX].retries == 0
    assert report.populations[BERLIN].retries == 8
    rows = {int(r["id"]): r for r in records(path)}
    failed = [r for r in rows.values() if r["status"] == ERROR]
    done = [r for r in rows.values() if r["status"] == STOP]
    assert len(failed) == 2 and all(r["zone"] == str(F1) and r["retries"] == "0" for r in failed)
    assert len(done) == 8 and all(r["zone"] == str(F2) and r["retries"] == "1" for r in done)
    for r in done:  # the client's TTFT runs from its original send, across the failed attempt
        assert float(r["ttft_s"]) > KILL_AT_S - float(r["arrival_s"])
    assert [zi for _, zi in sim.admitted].count(F1) == 10 and [zi for _, zi in sim.admitted].count(F2) == 8
    assert sim.dispatch.budget.retrying == 0  # everything ended, nothing still counted in the budget


def test_without_retries_the_queued_requests_fail_as_before():
    scenario = small_world(max_num_seqs=2, max_queue=100, faults=[kill("frankfurt-1")], max_retries=0)
    report = Burst(scenario, 10, duration_s=30).run()
    g = report.grid
    assert (g.completed, g.failed, g.rejected, g.retries) == (0, 10, 0, 0)


@pytest.mark.parametrize(
    "budget_min, ratio, retried",
    [
        (3, 0.0, 3),  # the floor binds: 3 retrying at once, and they stay retrying until they end
        # the share binds: retrying < 0.5 × in flight (10: the 2 mid-stream failures are in flight
        # until their error reaches the client, half an RTT after the kill, as live)
        (0, 0.5, 5),
        (10, 0.2, 8),  # the defaults: all 8
    ],
)
def test_the_retry_budget_caps_retries(budget_min, ratio, retried):
    scenario = small_world(
        max_num_seqs=2,
        max_queue=100,
        faults=[kill("frankfurt-1")],
        retry_budget_min=budget_min,
        retry_budget_ratio=ratio,
    )
    report = Burst(scenario, 10, duration_s=30).run()
    g = report.grid
    assert (g.retries, g.completed, g.failed) == (retried, retried, 10 - retried)
    assert_accounted(report)


def test_a_retry_never_goes_back_to_a_zone_it_tried():
    """Both frankfurt zones killed in turn: what frankfurt-2 held without a token moves on to mexico-1,
    never back to frankfurt-1 — even though the policy asks for frankfurt-1 every time."""

    class Stubborn(Nearest):
        def choose(self, request, candidates, view) -> int:
            super().choose(request, candidates, view)
            return F1  # outside the candidates on a retry: the driver takes the nearest offered

    # frankfurt-1 back up at once, so it *could* be chosen again on the second retry.
    faults = [
        {"at_s": KILL_AT_S, "kind": "zone_down", "zone": "frankfurt-1", "duration_s": 0.1},
        {"at_s": KILL_AT_S + 0.2, "kind": "zone_down", "zone": "frankfurt-2", "duration_s": 30},
    ]
    scenario = small_world(max_num_seqs=2, max_queue=100, faults=faults)
    policy = Stubborn()
    sim = Burst(scenario, 10, policy=policy, duration_s=40)
    report = sim.run()
    visits: dict[int, list[int]] = {}
    for rid, zi in sim.admitted:
        visits.setdefault(rid, []).append(zi)
    assert all(len(zones) == len(set(zones)) for zones in visits.values()), visits
    assert sorted(zones for zones in visits.values() if len(zones) == 3) == [[F1, F2, MX]] * 6
    # 8 moved once; 2 of them ran on frankfurt-2 when it died (failed), 6 moved again to mexico-1.
    g = report.grid
    assert (g.retries, g.failed, g.completed) == (8 + 6, 2 + 2, 6)
    assert sorted(len(zones) for zones in visits.values()) == [1, 1, 2, 2, 3, 3, 3, 3, 3, 3]
    # Each retry was offered only zones the request had not tried yet.
    for rid, zones in visits.items():
        offers = [candidates for r, candidates in policy.offered if r == rid]
        assert len(offers) == len(zones)
        for k, candidates in enumerate(offers):
            assert not set(candidates) & set(zones[:k]), (rid, k, candidates, zones)
    assert_accounted(report)


@pytest.mark.parametrize("max_retries, completed, retries", [(1, 2, 1 + 8), (2, 3, 1 + 2 + 7 * 2)])
def test_refused_requests_retry_at_most_max_retries_times_then_are_rejected(tmp_path, max_retries, completed, retries):
    """Zones without queues (one sequence each): a burst of 10 fills them and the rest is refused.
    With max_retries = 1 each refused request tries frankfurt-1 then frankfurt-2 (mexico-1 never);
    with 2 it also tries mexico-1. Refusals end as rejections (the gateway's 429 `overloaded`)."""
    scenario = small_world(max_num_seqs=1, max_queue=0, max_retries=max_retries)
    path = tmp_path / "records.csv"
    sim = Burst(scenario, 10, duration_s=30, records_path=path)
    report = sim.run()
    g = report.grid
    assert (g.completed, g.rejected, g.failed, g.retries) == (completed, 10 - completed, 0, retries)
    rows = records(path)
    assert all(int(r["retries"]) <= max_retries for r in rows)
    rejected = [r for r in rows if r["status"] == REJECTED]
    assert len(rejected) == 10 - completed and all(int(r["retries"]) == max_retries for r in rejected)
    assert {r["zone"] for r in rejected} == {str(F2 if max_retries == 1 else MX)}  # where it was last refused
    assert sum(int(r["retries"]) for r in rows) == g.retries
    assert_accounted(report)


def test_a_refusal_travels_back_before_the_retry():
    """The retry leaves half the first attempt's RTT after the refusal (13.6 ms RTT berlin→frankfurt),
    and reaches frankfurt-2 half its RTT later: admitted at arrival + 3 × 6.8 ms."""
    scenario = small_world(max_num_seqs=1, max_queue=0)
    sim = Burst(scenario, 2, duration_s=5)
    report = sim.run()
    assert (report.grid.completed, report.grid.retries) == (2, 1)
    second = sim.policy.ended[1]
    assert second.zone == F2 and sim.admitted == [(0, F1), (1, F2)]
    assert second.admit_s == pytest.approx(0.002 + 3 * 0.0068, abs=1e-9)


def test_a_choice_outside_the_candidates_means_the_nearest_candidate():
    """The dispatch core's rule in both drivers: a partitioned zone is never a candidate, and a policy
    that names one anyway gets the nearest candidate, so no attempt is sent into a partition."""

    class IntoThePartition(Nearest):
        def choose(self, request, candidates, view) -> int:
            super().choose(request, candidates, view)
            assert MX not in candidates
            return MX

    partition = {"at_s": 0, "kind": "partition", "population": "berlin", "region": "mexico"}
    scenario = small_world(max_num_seqs=4, max_queue=100, faults=[partition])
    policy = IntoThePartition()
    report = Burst(scenario, 3, policy=policy, duration_s=10).run()
    g = report.grid
    assert (g.completed, g.failed, g.retries) == (3, 0, 0)
    assert all(r.zone == F1 for r in policy.ended.values())


# --- whole runs -----------------------------------------------------------------------------------


def chaotic(**routing):
    """The small world near saturation (8 sequences and a queue of 4 per zone), two kills and a
    partition: refusals, failures under load and unreachable zones, every kind of retry."""
    faults = [
        kill("frankfurt-1", 5.0) | {"duration_s": 5},
        kill("mexico-1", 12.0) | {"duration_s": 3},
        {"at_s": 16, "kind": "partition", "population": "new_york", "region": "mexico", "duration_s": 3},
    ]
    return small_world(max_num_seqs=8, max_queue=4, faults=faults, **routing)


def test_every_request_ends_once_under_faults(tmp_path):
    path = tmp_path / "records.csv"
    policy = Nearest()
    sim = Simulation(chaotic(), policy=policy, duration_s=25, rate_scale=6.0, seed=5, records_path=path)
    report = sim.run()
    g = report.grid
    assert g.retries > 20 and g.failed > 0 and g.completed > 1000
    assert_accounted(report)
    rows = records(path)
    ended = [r for r in rows if r["status"] != "open"]  # the rest were in flight at the end
    assert (
        len(ended)
        == len(policy.ended)
        == g.arrivals - report.totals["in_flight"]
        == len(rows) - report.totals["in_flight"]
    )
    assert sum(int(r["retries"]) for r in rows) <= g.retries
    assert all(int(r["retries"]) <= MAX_RETRIES for r in rows)
    assert 0 <= sim.dispatch.budget.retrying <= report.totals["in_flight"]
    # Retries turn failures into completions: the same arrivals without them fail more.
    off = Simulation(chaotic(max_retries=0), policy="latency_aware", duration_s=25, rate_scale=6.0, seed=5).run()
    on = Simulation(chaotic(), policy="latency_aware", duration_s=25, rate_scale=6.0, seed=5).run()
    assert off.grid.arrivals == on.grid.arrivals
    assert off.grid.retries == 0 and on.grid.retries > 0
    assert on.grid.failed + on.grid.rejected < off.grid.failed + off.grid.rejected
    assert_accounted(off)
    assert_accounted(on)


def test_retries_are_deterministic():
    def run(seed: int) -> dict:
        return Simulation(chaotic(), duration_s=20, rate_scale=6.0, seed=seed).run().to_dict()

    first, again = run(3), run(3)
    assert first == again
    assert first["grid"]["retries"] > 0
    assert run(4)["grid"] != first["grid"]


def test_hedged_requests_still_end_once_with_retries():
    scenario = chaotic()
    sim = Simulation(scenario, policy="hedged", duration_s=25, rate_scale=6.0, seed=2)
    report = sim.run()
    assert report.meta["hedges"]["sent"] > 0 and report.grid.retries > 0
    assert_accounted(report)
    assert 0 <= sim.dispatch.budget.retrying <= report.totals["in_flight"]
    for zone in sim.zones:
        assert zone.in_system >= 0 and zone.queued >= 0


def test_a_run_without_failures_has_no_retries():
    report = Simulation(load_scenario(str(SMALL)), duration_s=20, seed=1).run()
    assert report.grid.retries == 0 and report.grid.failed == report.grid.rejected == 0
    assert not math.isnan(report.grid.ttft_s["p50"])
    assert report.to_dict()["grid"]["retries"] == 0
