"""Scenario loading: presets, bases and overrides, and errors that name file, line and field."""

from pathlib import Path

import pytest

from grid.errors import GridInputError
from grid.scenario import load_scenario, preset_names


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_world_has_the_card_regions_and_enough_populations():
    s = load_scenario()
    assert set(s.regions) == {"frankfurt", "paris", "london", "mexico", "thailand"}
    assert sum(z.region == "frankfurt" for z in s.zones.values()) >= 2
    assert len(s.populations) >= 12


def test_every_preset_loads():
    for name in preset_names():
        assert load_scenario(name).zones


def test_override_merges_by_id_and_adds_zones(tmp_path):
    path = write(
        tmp_path,
        "zones:\n  paris-1: {replicas: 2}\n  paris-3: {region: paris, replicas: 4}\ndemand: {scale: 2}\n",
    )
    s = load_scenario(str(path))
    assert s.zones["paris-1"].replicas == 2 and s.zones["paris-1"].region == "paris"
    assert s.zones["paris-3"].replicas == 4
    assert s.demand.scale == 2 and s.demand.rate_rps == load_scenario().demand.rate_rps


def test_command_line_overrides():
    s = load_scenario("default", {"zones.london-1.replicas": 1, "slo.ttft_s": "500ms"})
    assert s.zones["london-1"].replicas == 1 and s.slo.ttft_s == 0.5


def test_negative_replicas_names_file_line_and_field(tmp_path):
    path = write(tmp_path, "# a comment\nzones:\n  paris-1:\n    replicas: -1\n")
    with pytest.raises(GridInputError) as err:
        load_scenario(str(path))
    assert f"{path}:4: zones.paris-1.replicas" in str(err.value)
    assert "greater than or equal to 0" in str(err.value)


def test_unknown_field_is_refused(tmp_path):
    path = write(tmp_path, "slo:\n  ttft_seconds: 1\n")
    with pytest.raises(GridInputError, match=r"s\.yaml:2: slo\.ttft_seconds: unknown field"):
        load_scenario(str(path))


def test_unknown_region_lists_known_ones(tmp_path):
    path = write(tmp_path, "zones:\n  tokyo-1: {region: tokyo, replicas: 2}\n")
    with pytest.raises(GridInputError, match=r"s\.yaml:2: zones\.tokyo-1\.region: unknown region 'tokyo'.*frankfurt"):
        load_scenario(str(path))


def test_new_population_without_rtts_is_refused(tmp_path):
    path = write(
        tmp_path, "populations:\n  oslo: {name: Oslo, lat: 59.9, lon: 10.7, tz: Europe/Oslo, demand_share: 1}\n"
    )
    with pytest.raises(GridInputError, match="no RTTs for population 'oslo'"):
        load_scenario(str(path))


def test_bad_time_zone(tmp_path):
    path = write(tmp_path, "populations:\n  paris: {tz: Mars/Olympus}\n")
    with pytest.raises(GridInputError, match=r"populations\.paris\.tz: unknown time zone"):
        load_scenario(str(path))


def test_fault_needs_its_fields_and_known_zone(tmp_path):
    path = write(
        tmp_path, "faults:\n  - {at_s: 10, kind: zone_slow, zone: paris-1}\n  - {at_s: 5, kind: zone_down, zone: x}\n"
    )
    with pytest.raises(GridInputError) as err:
        load_scenario(str(path))
    assert "faults[0]: a zone_slow fault needs factor" in str(err.value)
    path = write(tmp_path, "faults:\n  - {at_s: 5m, kind: zone_down, zone: nowhere-1}\n")
    with pytest.raises(GridInputError, match=r"faults\.0\.zone|faults\[0\]\.zone"):
        load_scenario(str(path))


def test_durations_accept_units_and_refuse_nonsense(tmp_path):
    assert load_scenario(str(write(tmp_path, "duration_s: 2h\n"))).duration_s == 7200
    with pytest.raises(GridInputError, match="duration_s: .*expected a duration"):
        load_scenario(str(write(tmp_path, "duration_s: soon\n")))


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "zones:\n  paris-1: {replicas: 2\n")
    with pytest.raises(GridInputError, match=r"s\.yaml:\d+: not valid YAML"):
        load_scenario(str(path))


def test_not_a_mapping(tmp_path):
    with pytest.raises(GridInputError, match="must be a mapping"):
        load_scenario(str(write(tmp_path, "- a\n- b\n")))


def test_base_loop_is_reported(tmp_path):
    write(tmp_path, "base: b.yaml\n", "a.yaml")
    write(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(GridInputError, match="bases form a loop"):
        load_scenario(str(tmp_path / "a.yaml"))


def test_unknown_scenario_lists_presets():
    with pytest.raises(GridInputError, match="presets: default"):
        load_scenario("no-such-scenario")


def test_override_of_missing_path_says_what_exists():
    with pytest.raises(GridInputError, match="no field zones.atlantis-1.*known here: frankfurt-1"):
        load_scenario("default", {"zones.atlantis-1.replicas": 3})


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(GridInputError, match="not valid YAML"):
        load_scenario(str(path))
