"""`grid plan --autoscaling-bounds`: the plan becomes a scenario the autoscaler runs within."""

import yaml

from grid.capacity.handover import autoscaling_overlay
from grid.scaling.settings import ScalingSettings
from grid.scenario import load_scenario
from grid.world import build_world


def test_the_overlay_starts_at_the_plan_and_bounds_the_autoscaler(tmp_path):
    plan = {"frankfurt-1": 3, "thailand-1": 5}
    for bound, field in (("floor", "min_replicas"), ("ceiling", "max_replicas")):
        path = tmp_path / f"{bound}.yaml"
        path.write_text(yaml.safe_dump(autoscaling_overlay(plan, "default", bound)))
        scenario = load_scenario(str(path))
        assert scenario.zones["thailand-1"].replicas == 5
        settings = ScalingSettings.from_scenario(scenario, build_world(scenario))
        zone = settings.zones[list(scenario.zones).index("thailand-1")]
        assert getattr(zone, field) == 5
        assert zone.initial == 5
