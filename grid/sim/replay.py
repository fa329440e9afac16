"""Counterfactual replay (`grid sim --replay RECORDS`): a run's exact arrivals under another policy.

The records of a run (`grid sim --records`: one row per arrival, times at full precision) give its
arrivals back — the same instants, populations and sizes — and the scenario gives the rest (zones,
network, faults, seed: the same jitter draws, as jitter has its own random stream). Replayed under
the same policy and seed, a simulated run's report comes back exactly; under another policy, the
difference is per request: how many got their first token sooner or later, by how much, and where.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grid.demand.arrivals import ArrivalChunk
from grid.errors import GridInputError

SAME_WITHIN_S = 0.001  # first tokens within a millisecond count as unchanged


@dataclass(frozen=True)
class Recorded:
    """A run's records: its arrivals (time order) and each request's outcome, by id."""

    arrivals: ArrivalChunk
    ids: list[int]  # request id of each arrival, in time order
    ttft_s: dict[int, float]  # completed requests' TTFT
    zone: dict[int, int]
    population: dict[int, int]


def read_records(path: str | Path, n_populations: int) -> Recorded:
    """Read a records CSV; a malformed one is refused naming the file, line and column."""
    path = Path(path)
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise GridInputError(f"{path}: cannot read the records: {exc.strerror}") from None
    rows: list[tuple[float, int, int, int, int, int, float]] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [f for f in ("id", "population", "zone", "arrival_s", "prompt_tokens", "output_tokens", "status",
                               "ttft_s") if f not in (reader.fieldnames or ())]  # fmt: skip
        if missing:
            raise GridInputError(f"{path}:1: not a records file (`grid sim --records`): no column {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                arrival_s, rid, pop = float(row["arrival_s"]), int(row["id"]), int(row["population"])
                prompt, output, zone = int(row["prompt_tokens"]), int(row["output_tokens"]), int(row["zone"])
                ttft = float(row["ttft_s"]) if row["ttft_s"] and row["status"] in ("stop", "length") else math.nan
            except (TypeError, ValueError) as exc:
                raise GridInputError(f"{path}:{line}: {exc}") from None
            if not 0 <= pop < n_populations or not math.isfinite(arrival_s) or prompt < 0 or output < 0:
                raise GridInputError(f"{path}:{line}: population {pop}, arrival_s {arrival_s}, sizes out of range "
                                     f"for this scenario ({n_populations} populations)")  # fmt: skip
            rows.append((arrival_s, rid, pop, prompt, output, zone, ttft))
    if not rows:
        raise GridInputError(f"{path}: no requests to replay")
    rows.sort(key=lambda r: (r[0], r[1]))
    arrivals = ArrivalChunk(
        np.array([r[0] for r in rows]),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.array([r[4] for r in rows], dtype=np.int64),
    )
    return Recorded(
        arrivals,
        [r[1] for r in rows],
        {r[1]: r[6] for r in rows if r[6] == r[6]},
        {r[1]: r[5] for r in rows},
        {r[1]: r[2] for r in rows},
    )


@dataclass(frozen=True)
class ReplayDiff:
    compared: int  # completed in both runs
    faster: int
    slower: int
    same: int
    moved: int  # served by another zone
    delta_ms: dict[str, float]  # quantiles of (replay − original) TTFT
    by_population: list[tuple[str, int, float, int, int]]  # (population, compared, mean Δ ms, faster, slower)


def compare(original: Recorded, replay: Recorded, population_ids: list[str]) -> ReplayDiff:
    """Per request (matched by arrival order): the replay's TTFT against the original's."""
    deltas: list[float] = []
    moved = 0
    per_pop: dict[int, list[float]] = defaultdict(list)
    for a, b in zip(original.ids, replay.ids, strict=True):
        if a in original.ttft_s and b in replay.ttft_s:
            delta = replay.ttft_s[b] - original.ttft_s[a]
            deltas.append(delta)
            per_pop[original.population[a]].append(delta)
            moved += original.zone[a] != replay.zone[b]
    values = np.array(deltas)
    faster = int((values < -SAME_WITHIN_S).sum())
    slower = int((values > SAME_WITHIN_S).sum())
    quantiles = {f"p{q}": float(np.percentile(values, q)) * 1000 if len(values) else math.nan for q in (1, 50, 99)}
    rows = [
        (population_ids[p], len(d), float(np.mean(d)) * 1000, sum(x < -SAME_WITHIN_S for x in d),
         sum(x > SAME_WITHIN_S for x in d))
        for p, d in sorted(per_pop.items())
    ]  # fmt: skip
    return ReplayDiff(len(deltas), faster, slower, len(deltas) - faster - slower, moved, quantiles, rows)


def format_diff(diff: ReplayDiff, original_policy: str, replay_policy: str) -> str:
    lines = [
        f"replay under {replay_policy} vs the recorded run ({original_policy}): {diff.compared} requests completed "
        f"in both; TTFT faster {diff.faster}, slower {diff.slower}, unchanged (±1 ms) {diff.same}; "
        f"served by another zone {diff.moved}",
        "TTFT change, replay − recorded: " + ", ".join(f"{k} {v:+.0f} ms" for k, v in diff.delta_ms.items()),
        f"{'population':<14}{'requests':>9}{'mean Δ ms':>11}{'faster':>8}{'slower':>8}",
    ]
    lines += [f"{p:<14}{n:>9}{m:>+11.1f}{f:>8}{s:>8}" for p, n, m, f, s in diff.by_population]
    return "\n".join(lines)
