"""Telemetry: every Prometheus metric family of the grid, defined once (`grid.telemetry.metrics`)."""

from grid.telemetry.metrics import GridMetrics

__all__ = ["GridMetrics"]
