"""Sinks that keep a run's results: `RunStats` (both drivers' report) and the per-request CSV records."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

from grid.dispatch.limits import CONTEXT_LENGTH
from grid.dispatch.sinks import Outcome, Sink
from grid.routing.explain import Explanation
from grid.serving.request import LENGTH, REJECTED, STOP, Request
from grid.stats import RunStats

RECORD_FIELDS = (
    "id", "population", "zone", "arrival_s", "prompt_tokens", "output_tokens", "rtt_ms",
    "status", "ttft_s", "tpot_s", "e2e_s", "queue_s", "retries", "reason",
    "decision_rule", "decision_reason", "crossed_because",
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
    """One CSV row per request (`grid sim --records`): what `grid bench` and replays read. A row is
    written when its request ends; those still in flight when the run stops are written at `close()`
    with status `open`, so the file holds every arrival (a replay needs them all). Arrival times are
    written at full precision (`repr`): a replay must see the very same instants."""

    def __init__(
        self, path: str | Path, origin_s: float = 0.0, crossing: Callable[[int, Explanation], str] | None = None
    ) -> None:
        self.origin_s = origin_s  # the driver's clock at the run's start (the live gateway's is older)
        # Why each request went where it went: its last decision's rule and reason, and why it left its
        # home region (`grid.routing.crossing`); `grid explain` summarises these columns.
        self.crossing = crossing
        self._decisions: dict[int, tuple[str, str, str]] = {}
        self._file = Path(path).open("w", newline="")  # noqa: SIM115 — open for the whole run; close() ends it
        self._writer = csv.writer(self._file)
        self._writer.writerow(RECORD_FIELDS)
        self._in_flight: dict[int, Request] = {}

    def arrived(self, request: Request, now_s: float) -> None:
        self._in_flight[request.id] = request

    def ended(self, request: Request, outcome: Outcome, now_s: float) -> None:
        if self._in_flight.pop(request.id, None) is None:
            return  # it arrived before recording began (live: before the load's start)
        self._write(request, outcome, request.status or "open")

    def decided(self, request: Request, explanation: Explanation, now_s: float) -> None:
        if request.id not in self._in_flight:
            return  # arrived before recording began: it gets no row
        crossed = self.crossing(request.population, explanation) if self.crossing else ""
        self._decisions[request.id] = (explanation.rule, explanation.reason, crossed)

    def _write(self, request: Request, outcome: Outcome, status: str) -> None:
        queue = request.scheduled_s - request.admit_s if request.scheduled_s >= 0 and request.admit_s >= 0 else math.nan
        self._writer.writerow(
            (
                request.id,
                request.population,
                request.zone,
                repr(request.arrival_s - self.origin_s),
                request.prompt_tokens,
                request.output_tokens,
                f"{request.rtt_s * 1000:.3f}",
                status,
                _fmt(outcome.ttft_s),
                _fmt(outcome.tpot_s),
                _fmt(outcome.e2e_s),
                _fmt(queue),
                outcome.retries,
                outcome.reason,
                *self._decisions.pop(request.id, ("", "", "")),
            )  # fmt: skip
        )

    def close(self) -> None:
        for request in sorted(self._in_flight.values(), key=lambda r: r.id):
            self._write(request, Outcome("open", request.zone), "open")  # even if its zone had finished it
        self._in_flight.clear()
        self._file.close()


def _fmt(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6f}"


class DecisionsSink(Sink):
    """Every routing decision in full (`grid sim --decisions FILE`): one JSON line per attempt routed,
    its candidates with the terms the policy scored, the rule and the winner (as the live grid's
    /grid/decisions/{id} gives them)."""

    def __init__(self, path: str | Path, zone_ids: list[str], population_ids: list[str]) -> None:
        self._file = Path(path).open("w")  # noqa: SIM115 — open for the whole run; close() ends it
        self.zone_ids, self.population_ids = zone_ids, population_ids

    def decided(self, request: Request, explanation: Explanation, now_s: float) -> None:
        head = {"request_id": request.id, "t_s": round(now_s, 6), "population": self.population_ids[request.population]}
        self._file.write(json.dumps(head | explanation.to_dict(self.zone_ids)) + "\n")

    def close(self) -> None:
        self._file.close()
