"""The fault kinds and the fields each one needs: one table for scenario validation (`grid.scenario.Fault`),
the admin API (`grid.live.fault_control`) and `grid fault` (`grid.fault_cli`).

What the kinds do is in grid/faults.py; this module imports nothing of the grid, so every layer can use it.
"""

from __future__ import annotations

from typing import Literal, get_args

FaultKind = Literal["zone_down", "zone_slow", "link_delay", "partition", "spot_preempt"]

# kind → the fields a fault of that kind needs, its targets (zone, population, region) first
FAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "zone_down": ("zone",),
    "zone_slow": ("zone", "factor"),
    "link_delay": ("population", "region", "add_ms"),
    "partition": ("population", "region"),
    "spot_preempt": ("zone", "replicas"),  # the notice: autoscaling.spot.notice_s
}
TARGET_FIELDS = ("zone", "population", "region")

if get_args(FaultKind) != tuple(FAULT_FIELDS):
    raise AssertionError(f"FaultKind {get_args(FaultKind)} and FAULT_FIELDS {tuple(FAULT_FIELDS)} disagree")


def missing_fields(fault) -> list[str]:
    """The fields `fault` (anything with a `kind` and the fields as attributes) needs but has as None."""
    return [name for name in FAULT_FIELDS[fault.kind] if getattr(fault, name) is None]


def missing_message(kind: str, missing: list[str]) -> str:
    """The error for a `kind` fault without the `missing` fields."""
    return f"a {kind} fault needs {', '.join(missing)}"
