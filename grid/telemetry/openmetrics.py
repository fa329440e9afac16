"""Record a run's metrics as an OpenMetrics file that Prometheus can backfill.

`OpenMetricsRecorder` is a `Sink`: it forwards every event to a `MetricsSink` (so the registry holds
exactly what a live grid would export) and, every `scrape_interval_s` of the driver's clock, takes
a snapshot of the registry's samples (without the `*_created` series), as a Prometheus scraping the
grid would. `close()` writes them as one OpenMetrics 1.0 text file:

- one `# HELP` / `# TYPE` per family, then the family's series, each series (a histogram's buckets,
  `_count` and `_sum` together) with all its points in ascending time, as OpenMetrics requires
  (a family's samples contiguous, a series never interleaved with another);
- sample timestamps in seconds (millisecond precision) at `start_unix_s + now_s`;
- the last line `# EOF`.

Load it with `promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`, then start
`prometheus --storage.tsdb.path=DATA_DIR --storage.tsdb.retention.time=100y` (or move the blocks
into a running Prometheus' data directory). Time-based retention drops blocks older than the
newest block minus the retention; once a running Prometheus has cut a block of its own, a run
stamped more than the retention (default 15 d) in the past would be dropped: keep it large.

Which clock: the driver's (`tick(now_s)`; the simulator ticks at least once per simulated second).
A snapshot is taken at the first tick, then at the first tick at or after each multiple of the
interval, stamped with that tick's `now_s`; `close()` adds a last snapshot at the last time seen.

Memory: snapshots are rows of float64 (one value per series: 4,344 series for the default
scenario, 35 kB a row). Up to `max_buffer_bytes` (32 MiB by default: 960 rows of the default
scenario, so a 1 h run at 15 s scrapes — 240 rows, 8.3 MB — never leaves memory) they stay in
memory; beyond, each full buffer is appended to an anonymous temporary file as one chunk. `close()`
reads the chunks back through numpy memory maps one series group (≤ 30 columns) at a time and
streams the text out, so the process holds at most the buffer plus one group's column (rows × 30
values) whatever the run's length.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.utils import floatToGoString

from grid.dispatch.sinks import Outcome, Sink
from grid.routing.view import ZoneView
from grid.scenario import Scenario
from grid.serving.request import Request
from grid.telemetry.metrics import GridMetrics
from grid.telemetry.sink import MetricsSink

DEFAULT_SCRAPE_INTERVAL_S = 15.0
DEFAULT_MAX_BUFFER_BYTES = 32 * 1024 * 1024
# When the scenario gives no start time: a fixed, recent UTC instant (Prometheus accepts any positive
# timestamp for backfill; keep its retention larger than the age of this date, see the docstring).
FALLBACK_START_UTC = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

_OM_TYPES = {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
_CREATED_TYPES = {"counter", "histogram", "summary", "gaugehistogram"}


def start_unix_s(scenario: Scenario) -> float:
    """Unix time of the run's `now_s = 0`: the scenario's `demand.start_utc` (naive = UTC) or the fallback."""
    start = getattr(scenario.demand, "start_utc", None) or FALLBACK_START_UTC
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return start.timestamp()


def _escape(text: str) -> str:
    """OpenMetrics escaping of label values and HELP text: backslash, newline, double quote."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class _Family:
    name: str
    type: str
    help: str
    # group (a series: its labels without `le`/`quantile`) -> its columns, in exposition order
    groups: dict[tuple, list[int]] = field(default_factory=dict)


@dataclass
class _Chunk:
    rows: int
    width: int
    offset: int = -1  # byte offset in the spill file; -1: `matrix` is in memory
    matrix: np.ndarray | None = None


class OpenMetricsRecorder(Sink):
    """A sink that feeds `sink` (a `MetricsSink`) and records its registry every scrape interval;
    `close()` writes the OpenMetrics file (see the module docstring)."""

    def __init__(
        self,
        sink: MetricsSink,
        path: str | Path,
        start_unix_s: float,
        scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
        *,
        registry: CollectorRegistry | None = None,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        spill_dir: str | Path | None = None,
    ) -> None:
        if not scrape_interval_s >= 0.001:
            raise ValueError(f"scrape_interval_s must be at least 1 ms, got {scrape_interval_s!r}")
        self.sink = sink
        self.registry = registry if registry is not None else sink.registry
        self.path = Path(path)
        self.start_unix_s = float(start_unix_s)
        self.scrape_interval_s = float(scrape_interval_s)
        self.max_buffer_bytes = max(1, int(max_buffer_bytes))
        self.spill_dir = spill_dir
        self.closed = False
        self.snapshots = 0  # rows taken
        self.samples_written = 0
        self._families: dict[str, _Family] = {}
        self._columns: dict[tuple, int] = {}  # (sample name, labels) -> column
        self._times_ms: list[int] = []  # unix ms of each row, strictly ascending
        self._rows: list[np.ndarray] = []  # buffered rows (width = columns known when taken)
        self._buffered = 0  # values in `_rows`
        self._chunks: list[_Chunk] = []
        self._spill: IO[bytes] | None = None
        self._next_scrape_s: float | None = None
        self._last_now_s: float | None = None
        self._last_snapshot_s: float | None = None

    # --- events: forward to the metrics sink; ticks drive the scrape clock ------------------------

    def arrived(self, request: Request, now_s: float) -> None:
        self._seen(now_s)
        self.sink.arrived(request, now_s)

    def routed(self, request: Request, zone: int, rtt_s: float, decision_s: float, now_s: float) -> None:
        self._seen(now_s)
        self.sink.routed(request, zone, rtt_s, decision_s, now_s)

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        self._seen(now_s)
        self.sink.retried(request, from_zone, reason, to_zone, now_s)

    def hedged(self, request: Request, zone: int, outcome: str, now_s: float) -> None:
        self._seen(now_s)
        self.sink.hedged(request, zone, outcome, now_s)

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        self._seen(now_s)
        self.sink.ended(request, outcome, now_s)

    def zone_reported(self, zone: int, view: ZoneView, now_s: float) -> None:
        self._seen(now_s)
        self.sink.zone_reported(zone, view, now_s)

    def zone_health(self, zone: int, up: bool, now_s: float) -> None:
        self._seen(now_s)
        self.sink.zone_health(zone, up, now_s)

    def scaled(self, zone: int, reason: str, replicas: int, now_s: float) -> None:
        self._seen(now_s)
        self.sink.scaled(zone, reason, replicas, now_s)

    def tick(self, now_s: float) -> None:
        self._seen(now_s)
        self.sink.tick(now_s)
        if self.closed:
            return
        if self._next_scrape_s is None or now_s >= self._next_scrape_s:
            self.snapshot(now_s)
            if self._next_scrape_s is None:
                self._next_scrape_s = now_s
            missed = math.floor((now_s - self._next_scrape_s) / self.scrape_interval_s)
            self._next_scrape_s += (max(0, missed) + 1) * self.scrape_interval_s

    def _seen(self, now_s: float) -> None:
        if self._last_now_s is None or now_s > self._last_now_s:
            self._last_now_s = now_s

    # --- snapshots ----------------------------------------------------------------------------------

    def snapshot(self, now_s: float) -> bool:
        """Record the registry's current samples at `now_s` (False if that millisecond is not after the
        last snapshot's: a series' timestamps must ascend)."""
        if self.closed:
            raise RuntimeError("the recorder is closed")
        t_ms = round((self.start_unix_s + now_s) * 1000.0)
        if self._times_ms and t_ms <= self._times_ms[-1]:
            return False
        values: dict[int, float] = {}
        for metric in self.registry.collect():
            family = self._families.get(metric.name)
            if family is None:
                typ = metric.type if metric.type in _OM_TYPES else "unknown"
                family = self._families[metric.name] = _Family(metric.name, typ, metric.documentation)
            created = metric.name + "_created" if family.type in _CREATED_TYPES else None
            for sample in metric.samples:
                if sample.name == created:
                    continue
                key = (sample.name, tuple(sample.labels.items()))
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = len(self._columns)
                    group = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
                    family.groups.setdefault(tuple(sorted(group.items())), []).append(column)
                values[column] = sample.value
        row = np.full(len(self._columns), np.nan)
        if values:
            row[np.fromiter(values.keys(), dtype=np.int64, count=len(values))] = np.fromiter(
                values.values(), dtype=np.float64, count=len(values)
            )
        self._rows.append(row)
        self._buffered += row.size
        self._times_ms.append(t_ms)
        self._last_snapshot_s = now_s
        self.snapshots += 1
        if self._buffered * 8 >= self.max_buffer_bytes:
            self._spill_rows()
        return True

    def _rows_matrix(self) -> np.ndarray:
        width = max(row.size for row in self._rows)
        matrix = np.full((len(self._rows), width), np.nan)
        for i, row in enumerate(self._rows):
            matrix[i, : row.size] = row
        return matrix

    def _spill_rows(self) -> None:
        """Move the buffered rows to the spill file as one chunk."""
        if not self._rows:
            return
        matrix = self._rows_matrix()
        if self._spill is None:
            # closed (and so deleted) by close(): it lives across snapshots
            self._spill = tempfile.TemporaryFile(prefix="grid-openmetrics-", dir=self.spill_dir)  # noqa: SIM115
        self._spill.seek(0, os.SEEK_END)
        offset = self._spill.tell()
        self._spill.write(matrix.tobytes())
        self._chunks.append(_Chunk(matrix.shape[0], matrix.shape[1], offset))
        self._rows, self._buffered = [], 0

    # --- the file -----------------------------------------------------------------------------------

    def close(self) -> Path:
        """Take a last snapshot at the last time seen, write the file (atomically) and free the buffers."""
        if self.closed:
            return self.path
        last = self._last_now_s if self._last_now_s is not None else 0.0
        if self._last_snapshot_s is None or last > self._last_snapshot_s:
            self.snapshot(last)
        self.closed = True
        chunks = list(self._chunks)
        if self._rows:
            matrix = self._rows_matrix()
            chunks.append(_Chunk(matrix.shape[0], matrix.shape[1], matrix=matrix))
        if self._spill is not None:
            self._spill.flush()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8", newline="\n") as out:
                self._write(out, chunks)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
            if self._spill is not None:
                self._spill.close()
                self._spill = None
            self._rows, self._chunks, self._buffered = [], [], 0
        return self.path

    def __enter__(self) -> OpenMetricsRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _chunk_matrix(self, chunk: _Chunk) -> np.ndarray:
        if chunk.matrix is not None:
            return chunk.matrix
        assert self._spill is not None
        return np.memmap(self._spill, dtype=np.float64, mode="r", offset=chunk.offset, shape=(chunk.rows, chunk.width))

    def _group_values(self, columns: list[int], matrices: list[np.ndarray]) -> np.ndarray:
        """rows × len(columns) values of one series group across every chunk (NaN: absent)."""
        cols = np.asarray(columns, dtype=np.int64)
        contiguous = bool(np.all(np.diff(cols) == 1))
        parts = []
        for matrix in matrices:
            block = np.full((matrix.shape[0], cols.size), np.nan)
            inside = cols < matrix.shape[1]
            if inside.all() and contiguous:
                block[:] = matrix[:, cols[0] : cols[-1] + 1]
            elif inside.any():
                block[:, inside] = matrix[:, cols[inside]]
            parts.append(block)
        return np.concatenate(parts) if parts else np.empty((0, cols.size))

    def _write(self, out: IO[str], chunks: list[_Chunk]) -> None:
        names = {column: key for key, column in self._columns.items()}
        stamps = [f" {t // 1000}.{t % 1000:03d}\n" for t in self._times_ms]
        matrices = [self._chunk_matrix(chunk) for chunk in chunks]
        written = 0
        for family in self._families.values():
            out.write(f"# HELP {family.name} {_escape(family.help)}\n# TYPE {family.name} {family.type}\n")
            for columns in family.groups.values():
                prefixes = []
                for column in columns:
                    name, labels = names[column]
                    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    prefixes.append(f"{name}{{{label_text}}} " if label_text else f"{name} ")
                values = self._group_values(columns, matrices)
                lines = []
                for i, row in enumerate(values.tolist()):
                    stamp = stamps[i]
                    for prefix, value in zip(prefixes, row, strict=True):
                        if value == value:  # NaN: the series did not exist at that scrape
                            lines.append(prefix + floatToGoString(value) + stamp)
                written += len(lines)
                out.write("".join(lines))
        out.write("# EOF\n")
        self.samples_written = written


def open_recorder(
    scenario: Scenario,
    path: str | Path,
    policy_name: str | None = None,
    hedging: bool = False,
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S,
    *,
    start_s: float | None = None,
    model_name: str | None = None,
) -> OpenMetricsRecorder:
    """A recorder for `grid sim --metrics-out FILE`: a fresh registry with the scenario's
    `GridMetrics` (labelled `policy_name`, with `grid_hedges_total` when `hedging`), fed by a
    `MetricsSink`, scraped every `scrape_interval_s` of simulated time and stamped from the
    scenario's start (`start_s`: another unix time for `now_s = 0`). Pass it in the simulation's
    sinks; call `close()` (or use it as a context manager) when the run ends."""
    registry = CollectorRegistry()
    metrics = GridMetrics(registry, scenario, model_name=model_name, policy=policy_name, hedging=hedging)
    origin = start_unix_s(scenario) if start_s is None else start_s
    return OpenMetricsRecorder(MetricsSink(metrics), path, origin, scrape_interval_s, registry=registry)
