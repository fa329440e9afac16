"""Fault timeline and network state: the semantics both drivers apply."""

import math

from grid.faults import LINK_DELAY, PARTITION, ZONE_DOWN, ZONE_SLOW, ZONE_UP, NetworkState, fault_timeline
from grid.scenario import load_scenario
from grid.world import build_world


def test_timeline_orders_starts_and_ends():
    s = load_scenario(
        "default",
        {
            "faults": [
                {"at_s": 60, "kind": "zone_down", "zone": "paris-1", "duration_s": 30},
                {"at_s": 10, "kind": "zone_slow", "zone": "london-1", "factor": 3, "duration_s": 50},
                {"at_s": 5, "kind": "partition", "population": "tokyo", "region": "thailand"},
            ]
        },
    )
    actions = fault_timeline(s.faults, build_world(s))
    assert [(a.at_s, a.kind) for a in actions] == [
        (5, PARTITION), (10, ZONE_SLOW), (60, ZONE_SLOW), (60, ZONE_DOWN), (90, ZONE_UP),
    ]  # fmt: skip
    assert actions[1].value == 3 and actions[2].value == 1.0  # the end of a slowdown restores speed


def test_network_state_adds_delay_and_cuts_paths():
    s = load_scenario()
    world = build_world(s)
    pop, region = world.population_ids.index("tokyo"), world.region_ids.index("thailand")
    thailand_zone = world.zone_region.index(region)
    net = NetworkState(world)
    base = net.rtt_s()[pop][thailand_zone]
    net.apply(_action(LINK_DELAY, pop, region, 0.2))
    assert net.rtt_s()[pop][thailand_zone] == base + 0.2
    net.apply(_action(PARTITION, pop, region, 1.0))
    assert math.isinf(net.rtt_s()[pop][thailand_zone])
    net.apply(_action(PARTITION, pop, region, 0.0))
    net.apply(_action(LINK_DELAY, pop, region, 0.0))
    assert net.rtt_s()[pop][thailand_zone] == base


def _action(kind, pop, region, value):
    from grid.faults import FaultAction

    return FaultAction(0.0, kind, population=pop, region=region, value=value)


def test_partition_in_the_simulator_moves_traffic_away():
    from grid.sim.simulator import Simulation

    s = load_scenario(
        "default",
        {"faults": [{"at_s": 0, "kind": "partition", "population": "bangkok", "region": "thailand"}]},
    )
    report = Simulation(s, policy="nearest", duration_s=30, rate_scale=0.2).run()
    bangkok = next(p for p in report.populations if p.name == "bangkok")
    assert bangkok.completed > 0 and bangkok.failed == 0
    assert bangkok.extra["cross_region_share"] == 1.0
