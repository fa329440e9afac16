"""Autoscalers by name, and users' by `package.module:Class` (a subclass of `Autoscaler`, or any
class taking `(settings, demand)` with a `desired(signals, now_s)` method)."""

from __future__ import annotations

from grid.demand.arrivals import DemandModel
from grid.errors import GridInputError
from grid.plugins import import_user_class
from grid.scaling.policies import BUILT_IN, Autoscaler
from grid.scaling.settings import ScalingSettings
from grid.scenario import Scenario


def autoscaler_class(spec: str) -> type:
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    if ":" not in spec:
        raise GridInputError(
            f"unknown autoscaler {spec!r}; known: {', '.join(BUILT_IN)} (or a class of yours as package.module:Class)"
        )
    cls = import_user_class(spec, "autoscaler")
    if not callable(getattr(cls, "desired", None)):
        raise GridInputError(f"autoscaler {spec!r}: {cls.__name__} has no desired(signals, now_s) method")
    return cls


def forecast_model(scenario: Scenario) -> DemandModel | None:
    """The demand's daily shape, without its flash crowds (nobody forecasts those); None when the
    demand has no daily shape (a trace, sessions)."""
    demand = scenario.demand
    if demand.trace is not None or demand.sessions is not None or demand.diurnal is None:
        return None
    return DemandModel(demand.model_copy(update={"flash_crowds": []}), scenario.populations)


def make_autoscaler(spec: str, settings: ScalingSettings, scenario: Scenario) -> Autoscaler:
    cls = autoscaler_class(spec)
    try:
        autoscaler = cls(settings, forecast_model(scenario))
    except Exception as exc:
        raise GridInputError(f"autoscaler {spec!r}: constructing {cls.__name__} failed: {exc!r}") from None
    if not isinstance(getattr(autoscaler, "name", None), str):
        autoscaler.name = spec
    return autoscaler
