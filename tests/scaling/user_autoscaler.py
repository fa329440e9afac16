"""Autoscalers of a user's own, loaded by `--autoscaler tests.scaling.user_autoscaler:Class`."""

from grid.scaling.policies import Autoscaler


class Raises(Autoscaler):
    name = "raises"

    def desired(self, signals, now_s):
        raise RuntimeError("a bug in the user's policy")


class Double(Autoscaler):
    """Twice the replicas it serves with, once (then its bound holds it)."""

    name = "double"

    def desired(self, signals, now_s):
        return [2 * s.serving if s.serving else None for s in signals]
