"""Trace replay: a window of a trace as the run's arrivals, its sessions kept on one population.

Before the run, one pass over the window (:func:`trace_window`, cached per file and window) counts
what it holds: requests, failed rows, the trace's own mean sizes (for offered load and the routers'
capacity view), where the window starts in the file, and whether its span and rate are plausible for
the stated time unit. The run then streams the window again, a chunk at a time.

Populations: a trace has no geography, so each session is given a population drawn by demand share,
and every request of a session goes to that population (`populations: sessions`; `shares` draws
every request on its own). A session is what the trace says it is:

- a ``Session ID`` column (BurstGPT) or ``session_id`` key: the population is a hash of the key and
  the seed, so it needs no memory however long the trace;
- block hashes (Mooncake's ``hash_ids``): a request whose full blocks extend a previous request's
  prompt (its blocks, then more) continues that request's conversation, as a chat turn resends the
  conversation so far. A prompt end that two different conversations continue is a shared prefix
  (a system prompt), not a session, and is forgotten. The table of prompt ends is bounded.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from grid.demand.arrivals import ArrivalChunk, PrefixedChunk
from grid.demand.sessions import chain_hash
from grid.demand.spec import TraceReplay
from grid.demand.traces import RowChunk, TraceReader, TraceStats, unit_warnings
from grid.errors import GridInputError, GridWarning

MAX_PROMPT_ENDS = 1 << 19  # prompt ends remembered for session continuity (~60 MB at most)
_UNSET = -2


@dataclass(frozen=True)
class TraceWindow:
    """What the replayed window of a trace holds (see :class:`TraceStats`); times on the trace's clock."""

    path: Path
    stats: TraceStats
    start_s: float
    end_s: float  # where the window ends: its duration's end if rows go on past it, else its last row
    seek: tuple[int, int] | None  # byte offset (decompressed) and line of its first row
    warnings: tuple[str, ...]

    @property
    def span_s(self) -> float:
        return max(0.0, self.end_s - self.start_s)


def trace_window(cfg: TraceReplay) -> TraceWindow:
    """The window `cfg` replays, read once per file version and window (warnings are issued then)."""
    path = Path(cfg.path)
    try:
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
    except OSError:
        version = (0, 0)  # the reader names the problem
    key = (cfg.time_unit, cfg.block_tokens, cfg.failed_rows, cfg.start_s, cfg.duration_s, cfg.limit)
    return _scan(str(path), version, key)


@functools.lru_cache(maxsize=32)
def _scan(path: str, version: tuple[int, int], key: tuple) -> TraceWindow:
    time_unit, block_tokens, failed_rows, start_s, duration_s, limit = key
    reader = TraceReader(path, time_unit=time_unit, block_tokens=block_tokens, failed_rows=failed_rows)
    end = start_s + duration_s if duration_s is not None else math.inf
    for _ in reader.chunks(start_s, end, limit):
        pass
    st = reader.stats
    if st.replayed == 0:
        raise GridInputError(
            f"{path}: no requests to replay in the window from {start_s:g} s"
            + (f" for {duration_s:g} s" if duration_s is not None else "")
            + f" ({st.rows:,} rows read, {st.before_window:,} before it, {st.failed:,} failed)"
        )
    end_s = end if st.stopped == "window" else st.last_s
    problems = unit_warnings(Path(path), st, time_unit)
    if st.failed:
        what = "replayed with a 1-token answer" if failed_rows == "prefill" else "skipped"
        other = "skip" if failed_rows == "prefill" else "prefill"
        problems.append(
            f"{path}: {st.failed:,} rows have 0 output tokens (failed requests): {what} "
            f"(demand.trace.failed_rows: {other} to change)"
        )
    if st.empty_prompt:
        problems.append(f"{path}: {st.empty_prompt:,} rows have 0 prompt tokens: skipped")
    if st.out_of_order:
        problems.append(
            f"{path}: {st.out_of_order:,} rows are out of time order by more than a chunk: replayed at the "
            "latest time already replayed (sort the file by time for exact arrivals)"
        )
    if st.hashes_ignored:
        problems.append(
            f"{path}: {st.hashes_ignored:,} rows carry hash_ids but demand.trace.block_tokens is 0: the prefix "
            "hashes are not used (Mooncake traces: block_tokens: 512)"
        )
    for problem in problems:
        warnings.warn(problem, GridWarning, stacklevel=2)
    seek = (st.start_offset, st.start_line) if st.start_offset > 0 else None
    return TraceWindow(Path(path), replace(st), start_s, end_s, seek, tuple(problems))


def replay_horizon(cfg: TraceReplay, window: TraceWindow, duration_s: float, scale: float) -> float:
    """When arrivals stop: the run's duration, or sooner the window's end played `scale` times as fast."""
    return duration_s if cfg.loop else min(duration_s, window.span_s / scale)


class SessionAffinity:
    """Populations for a trace's requests: a new session's by share, a continuing one's as before."""

    def __init__(self, shares: np.ndarray, rng: np.random.Generator, by_session: bool, seed: int) -> None:
        self.cdf = np.cumsum(shares / shares.sum())
        self.cdf[-1] = 1.0
        self.rng = rng
        self.by_session = by_session
        self.seed = seed
        self.ends: dict[int, list[int]] = {}  # a prompt's last full block → [population, next block id]
        self.continued = 0  # requests placed by their session (key, or a prompt extending an earlier one)

    def assign(self, rows: RowChunk) -> np.ndarray:
        draws = np.searchsorted(self.cdf, self.rng.random(len(rows)), side="right")
        if not self.by_session or (rows.hashes is None and rows.sessions is None):
            return draws
        pops = draws.tolist()
        keys = rows.sessions or itertools.repeat(None)
        hashes = rows.hashes or itertools.repeat(None)
        for i, (key, h) in enumerate(zip(keys, hashes, strict=False)):  # one may be endless
            if key is not None:
                pops[i] = self._by_key(key)
            elif h:
                pops[i] = self._by_prefix(h, pops[i])
        return np.asarray(pops, dtype=np.int64)

    def _by_key(self, key: str) -> int:
        self.continued += 1
        u = chain_hash(self.seed, zlib.crc32(key.encode())) / float(1 << 63)
        return int(np.searchsorted(self.cdf, u, side="right"))

    def _by_prefix(self, h: tuple[int, ...], draw: int) -> int:
        ends = self.ends
        population = draw
        for k in range(len(h) - 1, -1, -1):
            entry = ends.get(h[k])
            if entry is None:
                continue
            nxt = h[k + 1] if k + 1 < len(h) else _UNSET  # _UNSET: the same prompt again
            if entry[0] >= 0 and nxt != _UNSET and entry[1] not in (_UNSET, nxt):
                entry[0] = -1  # two conversations continue this prompt: a shared prefix, not a session
            elif entry[0] >= 0:
                if nxt != _UNSET:
                    entry[1] = nxt
                population = entry[0]
                self.continued += 1
            break
        if h[-1] not in ends:
            if len(ends) >= MAX_PROMPT_ENDS:
                for old in list(itertools.islice(ends, MAX_PROMPT_ENDS // 8)):
                    del ends[old]
            ends[h[-1]] = [population, _UNSET]
        return population


def trace_arrivals(
    cfg: TraceReplay,
    window: TraceWindow,
    affinity: SessionAffinity,
    scale: float,
    duration_s: float,
) -> Iterator[ArrivalChunk]:
    """The window's requests in time order, `scale` times as fast, until `duration_s`; looped if asked."""
    end = cfg.start_s + cfg.duration_s if cfg.duration_s is not None else math.inf
    n = max(window.stats.replayed - 1, 1)
    period = window.span_s + window.span_s / n if window.span_s > 0 else 1.0  # a mean gap at the seam
    offset = 0.0
    while True:
        reader = TraceReader(
            window.path, time_unit=cfg.time_unit, block_tokens=cfg.block_tokens, failed_rows=cfg.failed_rows
        )
        for rows in reader.chunks(cfg.start_s, end, cfg.limit, seek=window.seek):
            times = (offset + rows.t_s - cfg.start_s) / scale
            pops = affinity.assign(rows)
            keep = int(np.searchsorted(times, duration_s, side="left"))
            if keep:
                arrays = (times[:keep], pops[:keep], rows.prompt[:keep], rows.output[:keep])
                if rows.hashes is not None and cfg.block_tokens:
                    yield PrefixedChunk(*arrays, rows.hashes[:keep], cfg.block_tokens)
                else:
                    yield ArrivalChunk(*arrays)
            if keep < len(times):
                return
        if not cfg.loop:
            return
        offset += period
