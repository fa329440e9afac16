"""Explainable decisions (issue 19): every built-in policy's explanation, recomputed from its terms
alone, picks the zone the policy chose, decision after decision, in the simulator."""

from __future__ import annotations

import json

import pytest

from grid.dispatch.sinks import Sink
from grid.routing.explain import recompute
from grid.routing.registry import POLICIES
from grid.scenario import load_scenario
from grid.sim.simulator import Simulation


class Decisions(Sink):
    def __init__(self) -> None:
        self.explanations = []
        self.first_zone: dict[int, int] = {}

    def decided(self, request, explanation, now_s: float) -> None:
        self.explanations.append((request.id, explanation))

    def routed(self, request, zone, rtt_s, decision_s, now_s) -> None:
        self.first_zone.setdefault(request.id, zone)  # the first attempt's zone


# The demo world has single-replica zones near saturation and Frankfurt down from 60 s (headroom,
# spill and failover decisions); the sessions preset gives prompts prefix hashes (cache terms).
# The demo world at 1.6× its demand puts zones past the headroom line, so that rule decides too.
DOWN = [{"at_s": 5, "kind": "zone_down", "zone": f"frankfurt-{i}", "duration_s": 5} for i in (1, 2, 3)]
CASES = [("demo", {"faults": DOWN, "demand.scale": 1.6}, 20.0), ("sessions-eu-peak", {"demand.scale": 0.05}, 20.0)]


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize(("preset", "overrides", "duration_s"), CASES, ids=[c[0] for c in CASES])
def test_each_explanation_recomputes_the_policy_s_choice(policy, preset, overrides, duration_s):
    scenario = load_scenario(preset, overrides)
    decisions = Decisions()
    report = Simulation(scenario, policy, 1, duration_s, 1.0, sinks=[decisions]).run()
    assert len(decisions.explanations) >= report.grid.arrivals - report.grid.rejected > 50
    rules = set()
    for _, explanation in decisions.explanations:
        assert "differently" not in explanation.reason, explanation
        assert recompute(explanation) == explanation.winner, explanation
        rules.add(explanation.rule)
    first = {}
    for request_id, explanation in decisions.explanations:
        first.setdefault(request_id, explanation.winner)
    assert all(decisions.first_zone[i] == zone for i, zone in first.items() if i in decisions.first_zone)
    assert "chosen" not in rules  # every built-in policy explains itself
    zone_ids = Simulation(scenario, policy, 1, 1.0, 1.0).world.zone_ids
    json.dumps(decisions.explanations[-1][1].to_dict(zone_ids))  # serializable as the live API gives it
