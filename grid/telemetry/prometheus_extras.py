"""Two things prometheus_client does not offer: observing many values into a histogram child at once,
and a view of a registry without the `_created` samples."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric


def observe_many(histogram_child, values: Iterable[float]) -> None:
    """Observe many values with one increment per bucket (an ITL list can hold thousands of gaps).

    Uses prometheus_client's histogram child internals (`_upper_bounds`, `_buckets`, `_sum`, stable
    since 0.4); falls back to one `observe` per value if they change.
    """
    try:
        bounds = histogram_child._upper_bounds
        buckets = histogram_child._buckets
        total = histogram_child._sum
    except AttributeError:  # pragma: no cover - a future prometheus_client
        for value in values:
            histogram_child.observe(value)
        return
    counts: dict[int, int] = {}
    acc = 0.0
    for value in values:
        i = bisect_left(bounds, value)  # first bound ≥ value (`le` is inclusive); +Inf is last
        counts[i] = counts.get(i, 0) + 1
        acc += value
    if not counts:
        return
    total.inc(acc)
    for i, n in counts.items():
        buckets[i].inc(n)


class RegistryWithoutCreated:
    """A registry view that drops the `_created` samples of counters, histograms and summaries."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram", "summary", "gaugehistogram"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
