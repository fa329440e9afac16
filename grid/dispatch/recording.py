"""Sinks that keep a run's results: `RunStats` (both drivers' report) and the per-request CSV records."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from grid.dispatch.limits import CONTEXT_LENGTH
from grid.dispatch.sinks import Outcome, Sink
from grid.serving.request import LENGTH, REJECTED, STOP, Request
from grid.stats import RunStats

RECORD_FIELDS = (
    "id", "population", "zone", "arrival_s", "prompt_tokens", "output_tokens", "rtt_ms",
    "status", "ttft_s", "tpot_s", "e2e_s", "queue_s", "retries", "reason",
)  # fmt: skip


class StatsSink(Sink):
    """Feeds `RunStats`. `new_window()` starts a fresh one; a request counts in the window it arrived
    in (request ids grow), so requests in flight at the switch still end where they began."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self._first_id = 0  # the current window's first request id
        self._older: list[tuple[int, RunStats]] = []  # (first id, stats), newest last

    def new_window(self, stats: RunStats, first_id: int) -> None:
        self._older.append((self._first_id, self.stats))
        del self._older[:-4]  # windows older than a few switches have no requests left in flight
        self.stats, self._first_id = stats, first_id

    def _window(self, request: Request) -> RunStats:
        return self.stats if request.id >= self._first_id else self._older_window(request.id)

    def _older_window(self, request_id: int) -> RunStats:
        for first_id, stats in reversed(self._older):
            if request_id >= first_id:
                return stats
        return self._older[0][1] if self._older else self.stats

    def counts_in(self, request_id: int, stats: RunStats) -> bool:
        """Request `request_id` counts in window `stats`."""
        window = self.stats if request_id >= self._first_id else self._older_window(request_id)
        return window is stats

    def arrived(self, request: Request, now_s: float) -> None:
        stats = self.stats if request.id >= self._first_id else self._older_window(request.id)
        stats.arrivals[request.population] += 1

    def retried(self, request: Request, from_zone: int, reason: str, to_zone: int | None, now_s: float) -> None:
        self._window(request).retries[request.population, from_zone] += 1

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        stats = self.stats if request.id >= self._first_id else self._older_window(request.id)
        p, z = request.population, outcome.zone
        status = outcome.status
        if status in (STOP, LENGTH):
            stats.finished(p, z, outcome.ttft_s, outcome.tpot_s, outcome.e2e_s, request.prompt_tokens,
                           request.output_tokens, request.cached_tokens)  # fmt: skip
        elif status == REJECTED:
            stats.rejected[p, z if z >= 0 else stats.n_zones] += 1
            if outcome.reason == CONTEXT_LENGTH:
                stats.context_rejected[p] += 1
        else:  # error, or cancelled by its client: not completed
            stats.failed[p, z if z >= 0 else stats.n_zones] += 1


class RecordsSink(Sink):
    """One CSV row per ended request (`grid sim --records`): what `grid bench` and replays read."""

    def __init__(self, path: str | Path) -> None:
        self._file = Path(path).open("w", newline="")  # noqa: SIM115 — open for the whole run; close() ends it
        self._writer = csv.writer(self._file)
        self._writer.writerow(RECORD_FIELDS)

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        queue = request.scheduled_s - request.admit_s if request.scheduled_s >= 0 and request.admit_s >= 0 else math.nan
        self._writer.writerow(
            (
                request.id,
                request.population,
                request.zone,
                f"{request.arrival_s:.6f}",
                request.prompt_tokens,
                request.output_tokens,
                f"{request.rtt_s * 1000:.3f}",
                request.status or "open",
                _fmt(outcome.ttft_s),
                _fmt(outcome.tpot_s),
                _fmt(outcome.e2e_s),
                _fmt(queue),
                outcome.retries,
                outcome.reason,
            )  # fmt: skip
        )

    def close(self) -> None:
        self._file.close()


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"
